"""Targets for ``trio-runner doctor`` whose module adds a loguru handler when imported.

``tests.kernel.observability.doctor_targets:service`` — the module adds a handler with
loguru's defaults (``diagnose=True``) when ``DOCTOR_TARGET_HANDLER=diagnose``, one with
``diagnose=False`` otherwise, as an app's module configuring its logs at import would.
"""

from __future__ import annotations

import os
import sys

from loguru import logger

import kernel

logger.add(sys.stderr, diagnose=os.environ.get("DOCTOR_TARGET_HANDLER") == "diagnose")

service = kernel.Service(app=kernel.App("shop", register=[]), log=kernel.LogConfig(format="json"))
