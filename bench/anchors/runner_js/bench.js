"use strict";
// BlueLibs Runner measured with the shapes and the method of `python -m bench`:
// per-op nanoseconds, ops per repetition calibrated to a target duration, warm-up
// repetitions, then `reps` timed rounds over all shapes (GC run before each repetition
// when --expose-gc).
// Prints one JSON object on stdout; bench/anchors/runner.py computes the statistics.
//
//   node --expose-gc bench.js [--shapes bare,run_task] \
//        [--settings '{"reps":15,"target_rep_ns":40000000,"warmup_reps":1}']
//
// Loaded with CommonJS: the ESM node entry of @bluelibs/runner fails on Node 20.
const { r, run, globals } = require("@bluelibs/runner");
const runnerVersion = require("@bluelibs/runner/package.json").version;

const DEFAULTS = { reps: 15, target_rep_ns: 40e6, warmup_reps: 1, max_calls: 10e6 };
const RUN_OPTIONS = { shutdownHooks: false, logs: { printThreshold: null } };

function readSettings(argv) {
  const at = argv.indexOf("--settings");
  return at === -1 ? { ...DEFAULTS } : { ...DEFAULTS, ...JSON.parse(argv[at + 1]) };
}

async function timed(loop, calls) {
  if (global.gc) global.gc();
  const start = process.hrtime.bigint();
  await loop(calls);
  return Number(process.hrtime.bigint() - start);
}

function callsFor(s, calls, elapsed) {
  const scaled = Math.round((calls * s.target_rep_ns) / Math.max(elapsed, 1));
  return Math.max(1, Math.min(s.max_calls, scaled));
}

// Grow the loop until it takes an eighth of the target, then rescale twice more: the
// first, cold runs are slow, so a single estimate would give far too few calls.
async function calibrate(loop, s) {
  let calls = 1;
  let elapsed = await timed(loop, calls);
  while (elapsed * 8 < s.target_rep_ns && calls < s.max_calls) {
    calls = Math.min(calls * 4, s.max_calls);
    elapsed = await timed(loop, calls);
  }
  for (let k = 0; k < 2; k++) {
    calls = callsFor(s, calls, elapsed);
    elapsed = await timed(loop, calls);
  }
  return callsFor(s, calls, elapsed);
}

// Calibrate and warm up each loop in turn, then time one repetition of every loop per
// round, so that a slow spell of the machine touches every shape alike.
async function measureAll(loops, s) {
  const results = {};
  const calls = {};
  for (const [name, loop] of Object.entries(loops)) {
    try {
      calls[name] = await calibrate(loop, s);
      for (let k = 0; k < s.warmup_reps; k++) await loop(calls[name]);
      results[name] = { calls_per_rep: calls[name], samples_ns: [] };
    } catch (error) {
      results[name] = { error: describe(error) };
    }
  }
  for (let k = 0; k < s.reps; k++) {
    for (const [name, loop] of Object.entries(loops)) {
      if (results[name].error !== undefined) continue;
      try {
        results[name].samples_ns.push((await timed(loop, calls[name])) / calls[name]);
      } catch (error) {
        results[name] = { error: describe(error) };
      }
    }
  }
  return results;
}

function describe(error) {
  return `${error && error.name}: ${error && error.message}`;
}

async function f(x) {
  return x;
}

const passthroughs = [1, 2, 3, 4, 5].map((k) =>
  r.middleware
    .task(`bench.middleware.passthrough${k}`)
    .run(async ({ task, next }) => next(task.input))
    .build(),
);
const basic = r.task("bench.tasks.basic").run(async (x) => x).build();
const passthrough5 = r
  .task("bench.tasks.passthrough5")
  .middleware(passthroughs)
  .run(async (x) => x)
  .build();
const timeoutRetry = r
  .task("bench.tasks.timeoutRetry")
  .middleware([
    globals.middleware.task.timeout.with({ ttl: 10000 }),
    globals.middleware.task.retry.with({ retries: 3 }),
  ])
  .run(async (x) => x)
  .build();
const circuitBreaker = r
  .task("bench.tasks.circuitBreaker")
  .middleware([
    globals.middleware.task.circuitBreaker.with({ failureThreshold: 5, resetTimeout: 30000 }),
  ])
  .run(async (x) => x)
  .build();
const ping = r.event("bench.events.ping").build();
let heard = 0;
const onPing = r
  .hook("bench.hooks.onPing")
  .on(ping)
  .run(async () => {
    heard += 1;
  })
  .build();
const app = r
  .resource("bench.app")
  .register([...passthroughs, basic, passthrough5, timeoutRetry, circuitBreaker, ping, onPing])
  .build();

const hundred = [];
for (let k = 0; k < 100; k++) {
  hundred.push(r.resource(`bench.hundred.r${k}`).init(async () => k).build());
}
const hundredApp = r.resource("bench.hundred").register(hundred).build();

const chain = [];
for (let k = 0; k < 10; k++) {
  const builder = r.resource(`bench.chain.r${k}`);
  const previous = chain[k - 1];
  chain.push(
    previous === undefined
      ? builder.init(async () => 0).build()
      : builder
          .dependencies({ previous })
          .init(async (_config, deps) => deps.previous + 1)
          .build(),
  );
}
const chainApp = r.resource("bench.chain").register(chain).build();

function taskLoop(runtime, task) {
  return async (n) => {
    for (let i = 0; i < n; i++) await runtime.runTask(task, i);
  };
}

function startLoop(root) {
  return async (n) => {
    for (let i = 0; i < n; i++) {
      const runtime = await run(root, RUN_OPTIONS);
      await runtime.dispose();
    }
  };
}

// Shapes timed over a runtime of `app`; the others start runtimes of their own.
const OVER_APP = ["bare", "run_task", "passthrough5", "timeout_retry", "circuit_breaker", "emit_one_hook"];
const STARTING = ["run_dispose_100", "chain_10"];

function shapesOver(runtime) {
  return {
    bare: async (n) => {
      for (let i = 0; i < n; i++) await f(i);
    },
    run_task: taskLoop(runtime, basic),
    passthrough5: taskLoop(runtime, passthrough5),
    timeout_retry: taskLoop(runtime, timeoutRetry),
    circuit_breaker: taskLoop(runtime, circuitBreaker),
    emit_one_hook: async (n) => {
      for (let i = 0; i < n; i++) await runtime.emitEvent(ping, i);
    },
  };
}

const STARTING_LOOPS = { run_dispose_100: startLoop(hundredApp), chain_10: startLoop(chainApp) };

// --shapes a,b,c picks shapes (default: all). Each run()+dispose() of Runner 5.5.0 makes
// every later `await` of the process slower, so the Python side runs the starting shapes
// in processes of their own.
function readShapes(argv) {
  const at = argv.indexOf("--shapes");
  const names = at === -1 ? [...OVER_APP, ...STARTING] : argv[at + 1].split(",");
  const unknown = names.filter((n) => !OVER_APP.includes(n) && !STARTING.includes(n));
  if (unknown.length > 0) throw new Error(`unknown shapes: ${unknown.join(", ")}`);
  return names;
}

async function main() {
  const settings = readSettings(process.argv);
  const names = readShapes(process.argv);
  const runtime = names.some((n) => OVER_APP.includes(n)) ? await run(app, RUN_OPTIONS) : null;
  const available = { ...(runtime === null ? {} : shapesOver(runtime)), ...STARTING_LOOPS };
  const loops = Object.fromEntries(names.map((n) => [n, available[n]]));
  const scenarios = await measureAll(loops, settings);
  if (runtime !== null) await runtime.dispose();
  if (scenarios.emit_one_hook !== undefined && heard === 0) {
    scenarios.emit_one_hook = { error: "the hook never ran" };
  }
  process.stdout.write(
    JSON.stringify({
      node: process.version,
      runner: runnerVersion,
      gc_between_reps: Boolean(global.gc),
      settings,
      scenarios,
    }) + "\n",
  );
}

main().catch((error) => {
  process.stderr.write(`${(error && error.stack) || error}\n`);
  process.exit(1);
});
