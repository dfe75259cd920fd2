"""``umt-migrations approve NAME``: print the plan a SchemaMigration waits on, then approve it.

Approving is setting ``spec.review.approvedPlanDigest`` to ``status.plan.digest``; this
command does it for the plan that waits now, and only for it: it refuses (exit 3, nothing
changed) when the resource's current generation has no plan waiting for approval, and the
patch carries the ``resourceVersion`` it read, so a plan that changes between printing and
approving is not approved (exit 3). ``--digest`` approves only the digest a person reviewed
(e.g. from ``umt-migrations plan --from <current> --to <target>`` in CI).

This module is the pure part; the API calls live in :mod:`umt_migrations.waiter_api` (the one
module that imports lightkube), imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import Any, TextIO

from .masking import scrub

PENDING_REASON = "ApprovalPending"


class ApproveExit(IntEnum):
    """Exit codes of ``approve``."""

    APPROVED = 0  #: the digest was written to spec.review.approvedPlanDigest
    USAGE = 2  #: invalid command line
    NOT_PENDING = 3  #: no plan waits for approval (or it changed, or --digest differs)
    API_ERROR = 5  #: the API refused or could not be reached


EXIT_CODES_HELP = """\
exit codes:
  0  approved: spec.review.approvedPlanDigest is the digest of the plan that was waiting
  3  nothing approved: no plan waits for approval, it changed meanwhile, or --digest differs
  5  Kubernetes API error: unreachable, 401/403, CRD not installed, resource not found
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the SchemaMigration")
    parser.add_argument("-n", "--namespace", default=None, metavar="NS",
                        help="namespace (default: the kubeconfig context's)")
    parser.add_argument("--digest", default=None, metavar="sha256:HEX",
                        help="approve only if the waiting plan has this digest")
    parser.add_argument("--kubeconfig", default=None, metavar="PATH",
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")


def pending_plan(obj: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """``(status.plan, "")`` when the current generation's plan waits for approval, else
    ``(None, why not)``."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    generation = meta.get("generation")
    plan = status.get("plan") if isinstance(status.get("plan"), dict) else None
    ready = next((c for c in status.get("conditions") or []
                  if isinstance(c, dict) and c.get("type") == "Ready"), {})
    if status.get("observedGeneration") != generation:
        return None, (f"the operator has not planned generation {generation} yet "
                      f"(observedGeneration {status.get('observedGeneration')}); try again")
    if plan is None or plan.get("generation") != generation:
        return None, f"generation {generation} has no plan (is spec.review set?)"
    if ready.get("reason") != PENDING_REASON or plan.get("approval") != "Pending" or \
            ready.get("observedGeneration") != generation:
        state = plan.get("approval") or "unknown"
        return None, (f"no plan waits for approval: plan {plan.get('digest')} is {state}; "
                      f"Ready is {ready.get('status')} ({ready.get('reason')})")
    return dict(plan), ""


def describe_plan(plan: Mapping[str, Any], full: Mapping[str, Any] | None,
                  config_map_problem: str | None = None) -> str:
    """The plan for a person: summary, then each step's SQL and findings when the ConfigMap
    could be read."""
    total = plan.get("findings") or {}
    lines = [
        f"plan {plan.get('digest')}: {plan.get('direction')} {plan.get('from') or 'base'} -> "
        f"{plan.get('to') or 'base'}, {len(plan.get('steps') or [])} step(s); "
        f"{total.get('error', 0)} error(s), {total.get('warning', 0)} warning(s), "
        f"{total.get('accepted', 0)} accepted",
    ]
    if full is None:
        lines.append(f"(SQL not shown: {config_map_problem or 'no ConfigMap'})")
        for step in plan.get("steps") or []:
            lines.append(f"== {step.get('revision')}  findings {json.dumps(step.get('findings'))}")
        return "\n".join(lines) + "\n"
    if full.get("truncated"):
        lines.append(f"(truncated: {json.dumps(full['truncated'])})")
    for step in full.get("steps") or []:
        lines += ["", f"== {step.get('revision')}  {step.get('description') or ''}".rstrip()]
        lines += [f"   {line}".rstrip() for line in str(step.get("sql") or "").splitlines()]
        for finding in step.get("findings") or []:
            verdict = f"accepted {finding.get('severity')}" if finding.get("accepted") \
                else finding.get("severity")
            why = f" [accepted: {finding.get('reason')}]" if finding.get("accepted") else ""
            lines.append(f"   {verdict} {finding.get('rule')}: {finding.get('message')}{why}")
    return scrub("\n".join(lines)) + "\n"


def choose(obj: dict[str, Any], full: Any, problem: str | None, *, wanted: str | None,
           say: Callable[[str], None]) -> tuple[str | None, str]:
    """The digest to approve (after printing the plan), or None and why nothing is approved."""
    plan, why = pending_plan(obj)
    if plan is None:
        return None, f"{why}; nothing approved"
    say(describe_plan(plan, full if isinstance(full, Mapping) else None, problem))
    digest = str(plan.get("digest"))
    if wanted is not None and wanted != digest:
        return None, f"the waiting plan is {digest}, not {wanted}; nothing approved"
    return digest, f"approved plan {digest} (spec.review.approvedPlanDigest)"


_EXITS = {"approved": ApproveExit.APPROVED, "refused": ApproveExit.NOT_PENDING,
          "conflict": ApproveExit.NOT_PENDING, "api-error": ApproveExit.API_ERROR}


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``umt-migrations approve``: returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    from . import waiter_api  # lightkube is imported here, and only here

    def say(text: str) -> None:
        print(text, file=out, end="", flush=True)

    result, line = waiter_api.approve(
        args.name, args.namespace, args.kubeconfig, args.context,
        lambda obj, full, problem: choose(obj, full, problem, wanted=args.digest, say=say))
    if result == "conflict":
        line += "; nothing approved: run approve again"
    code = _EXITS[result]
    print(line if code == ApproveExit.APPROVED else f"error: {line}",
          file=out if code == ApproveExit.APPROVED else err, flush=True)
    return int(code)
