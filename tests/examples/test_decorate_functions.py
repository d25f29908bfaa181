"""examples/decorate_functions.py must run and show each layer of the stack at work."""

from __future__ import annotations


async def test_the_stack_rides_out_an_outage(autojump_clock, capsys, load_example) -> None:
    await load_example("decorate_functions")["main"]()
    out = capsys.readouterr().out
    assert "stock, normal service: 12 of 12 answered" in out
    assert "stock, during an outage: [None, None, None, None, None, None]" in out
    assert "stock, after the outage: [None, 15, 15, 15]" in out
    assert "closed -> open" in out
    assert out.count("half_open -> closed; now closed") == 1
    assert "cache 6 hits / 3 misses" in out
