"""``umt-migrations apply``: the command's arguments and its run, wiring the two halves.

:mod:`umt_migrations.waiter` is the pure part (the manifest, a status for one generation, the
:class:`~umt_migrations.waiter.Tracker`); :mod:`umt_migrations.waiter_api` is the lightkube
door. This module imports the first at once and the second only when ``apply`` runs, so the
three depend in one direction: apply -> waiter_api -> waiter.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from .argtypes import seconds
from .waiter import (
    DEFAULT_APPROVE_SET_KEY,
    DEFAULT_FIELD_MANAGER,
    DEFAULT_GRACE,
    DEFAULT_TIMEOUT,
    UsageError,
    WaitExit,
    parse_manifest,
    read_manifest_text,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", required=True, metavar="FILE",
                        help="the SchemaMigration manifest (YAML or JSON); - reads stdin")
    parser.add_argument("-n", "--namespace", default=None, metavar="NS",
                        help="namespace (default: the manifest's, else the kubeconfig "
                        "context's or the service account's)")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--field-manager", default=DEFAULT_FIELD_MANAGER, metavar="NAME",
                        help=f"server-side apply field manager (default {DEFAULT_FIELD_MANAGER});"
                        " its fields are taken over with force")
    parser.add_argument("--operator-grace", type=seconds, default=DEFAULT_GRACE,
                        metavar="SECONDS", help="say the operator is probably not running when "
                        f"no status appears within this long (default {DEFAULT_GRACE:g})")
    parser.add_argument("--kubeconfig", default=None, metavar="PATH",
                        help="kubeconfig file (default: in-cluster service account, else "
                        "$KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("--approve-set-key", default=DEFAULT_APPROVE_SET_KEY, metavar="KEY",
                        help="the Helm values key printed in the approval hint when the plan "
                        f"waits for approval (default {DEFAULT_APPROVE_SET_KEY})")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``umt-migrations apply``: returns the exit code; never raises for expected failures."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        text, source = read_manifest_text(args.filename)
        manifest = parse_manifest(text, source)
    except UsageError as exc:
        print(f"error: {exc}", file=err, flush=True)
        return WaitExit.USAGE
    from . import waiter_api  # lightkube is imported here, and only here

    outcome = waiter_api.apply_and_wait(manifest, waiter_api.Options.from_args(args),
                                        lambda line: print(line, file=out, flush=True))
    if outcome.code == WaitExit.READY:
        print(outcome.line, file=out, flush=True)
    else:
        print(f"error: {outcome.line}", file=err, flush=True)
    return int(outcome.code)
