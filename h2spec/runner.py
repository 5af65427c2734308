"""Run cases, each on its own connection(s), several at a time."""

from __future__ import annotations

import ssl
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from h2spec.client import HandshakeError, Target
from h2spec.registry import Case, CaseContext, CaseFailed, CaseSkipped

PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass
class Result:
    case: Case
    status: str
    duration: float = 0.0
    expected: list[str] = field(default_factory=list)
    actual: str = ""
    message: str = ""
    notes: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def run_case(case: Case, target: Target) -> Result:
    """Run one case and turn whatever happens into a Result."""
    ctx = CaseContext(target)
    started = time.monotonic()
    try:
        case.run(ctx)
        result = Result(case, PASSED)
    except CaseFailed as failure:
        result = Result(case, FAILED, expected=failure.expected, actual=failure.actual)
    except CaseSkipped as skip:
        result = Result(case, SKIPPED, message=str(skip))
    except HandshakeError as exc:
        result = Result(case, FAILED, message=str(exc))
    except (OSError, ssl.SSLError) as exc:
        result = Result(case, FAILED, message=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # a bug in the case itself: report it, keep going
        summary = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = Result(case, FAILED, message=f"internal error in the test case: {summary}")
    finally:
        ctx.close()
    result.duration = time.monotonic() - started
    result.notes = ctx.notes
    result.log = ctx.log
    return result


def run_cases(
    cases: list[Case], target: Target, *, jobs: int = 8, runner: Callable[[Case, Target], Result] = run_case
) -> Iterator[Result]:
    """Yield results in catalogue order while cases run `jobs` at a time."""
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="h2spec") as pool:
        futures = [pool.submit(runner, case, target) for case in cases]
        for future in futures:
            yield future.result()
