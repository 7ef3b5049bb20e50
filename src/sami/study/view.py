"""Which page a folder gets: a run folder of ``sami experiment`` or an evaluation folder (``sami eval``, ``sami eval
import``), and ``sami view``'s small local server.

A run folder's page is ``<run>/report/index.html``; an evaluation folder's is ``<folder>/report/index.html``, where
the folder is either an evaluation's ``output_dir`` (holding ``mtbench/``, ``gsm8k/``, ... with their
``config.yaml``) or one suite's folder in it. The numbers are recomputed from the stored files as the report
recomputes them (``sami.study.report.build_summary``, ``sami.eval.run.compute``); nothing is generated or judged.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

from sami.core.config import from_dict, load_yaml
from sami.core.errors import ConfigError, InputMissing
from sami.core.layout import CONFIG, PAGE, REPORT_DIR
from sami.core.migrate import upgrade_config
from sami.study.page import Study, write_page, write_run_page


def write_eval_page(output_dir: Path, evals: dict, metrics: dict, page_dir: Path | None = None) -> Path:
    """The page of one evaluation folder: ``evals`` suite -> EvalConfig, ``metrics`` suite -> its metrics."""
    page_dir = page_dir or output_dir / REPORT_DIR
    return write_page(
        page_dir / PAGE,
        title=f"Evaluation: {output_dir.name}",
        studies=[Study("eval", evals=evals, metrics=metrics)],
        source=str(output_dir),
    )


def _read_config(path: Path) -> dict:
    """A folder's ``config.yaml`` as a mapping; empty where there is none."""
    return (load_yaml(path) or {}) if path.is_file() else {}


def _is_eval_config(path: Path) -> bool:
    return "models" in _read_config(path)


def _eval_configs(output_dir: Path, only: str | None = None) -> dict:
    """Suite -> EvalConfig of every suite folder under ``output_dir`` (or of suite ``only``), reading from where
    the folder is now."""
    from sami.eval.config import EvalConfig
    from sami.eval.run import SUITES

    out = {}
    for suite in SUITES if only is None else [s for s in SUITES if s == only]:
        path = output_dir / suite / CONFIG
        stored = _read_config(path)
        if "models" in stored:
            data = upgrade_config(EvalConfig, stored)  # a folder an older version wrote reads as today's
            data["output_dir"] = str(output_dir)  # the folder may have been moved or copied
            out[suite] = from_dict(EvalConfig, data, source=str(path))
    return out


def view(folder: str | Path) -> Path:
    """Write the page of ``folder`` (a run, an evaluation's output_dir or one suite's folder) from its stored
    files and return its path. It holds no lock and writes nothing but the page: a file a running stage is
    appending to is read as it stands (``sami.data.records.read_only``), never repaired."""
    from sami.data.records import read_only

    with read_only():
        return _view(folder)


def _view(folder: str | Path) -> Path:
    folder = Path(folder).resolve()
    if not folder.exists():
        raise InputMissing(f"no such folder: {folder}")
    if folder.is_file():
        raise InputMissing(f"{folder} is a file; expected a run folder of sami experiment or an evaluation folder")
    config = folder / CONFIG
    stored = _read_config(config)
    if "method" in stored:  # what sami train wrote
        raise InputMissing(
            f"{folder} is a training run (sami train), which has no page; evaluate it with sami eval "
            "and view that folder, or view the run of sami experiment that trained it"
        )
    if config.is_file() and "models" not in stored:
        return _view_run(folder)
    if "models" in stored:  # one suite's folder
        evals = _eval_configs(folder.parent, only=folder.name)
        page_dir = folder / REPORT_DIR
    else:
        evals, page_dir = _eval_configs(folder), folder / REPORT_DIR
    if not evals:  # evaluations of suites a plugin adds, with that plugin not loaded
        from sami.eval.run import SUITES

        unknown = [p.parent for p in [config, *folder.glob(f"*/{CONFIG}")] if _is_eval_config(p)]
        unknown = sorted(p.name for p in unknown if p.name not in SUITES)
        if unknown:
            raise InputMissing(
                f"{folder}: {', '.join(unknown)} hold(s) results of a suite no loaded plugin adds; "
                "load the plugin that adds it: sami --plugin MODULE view ..."
            )
    if not evals and any(_is_eval_config(p) for p in folder.glob(f"eval/*/{CONFIG}")):  # one study of a run
        raise InputMissing(
            f"{folder} is one study of a run; view the run ({folder.parent}) or its evaluations ({folder / 'eval'})"
        )
    if not evals:
        raise InputMissing(
            f"{folder}: neither a run folder (config.yaml of sami experiment) nor an evaluation "
            "folder (mtbench/, gsm8k/, adherence/ or mi/ with their config.yaml)"
        )
    from sami.eval.run import compute

    output_dir = Path(next(iter(evals.values())).output_dir)
    metrics = {suite: compute(suite, cfg) for suite, cfg in evals.items()}
    return write_eval_page(output_dir, evals, metrics, page_dir)


def _view_run(folder: Path) -> Path:
    from sami.study.experiment import load_experiment_config, plan_experiment
    from sami.study.report import build_summary, render_report

    cfg = load_experiment_config(folder / CONFIG)
    cfg.output_dir = str(folder)  # the run may have been moved or copied
    _, parts = plan_experiment(cfg)
    try:
        summary = build_summary(cfg, parts)
    except InputMissing as err:  # a run stopped before its last evaluation: say so, and where finished ones are
        done = sorted({str(p.parent.parent) for p in folder.glob(f"*/eval/*/{CONFIG}") if _is_eval_config(p)})
        hint = f"; sami view {' or '.join(done)} shows the evaluations it has" if done else ""
        raise InputMissing(f"{folder}: the run is not finished ({err}); its page needs every evaluation{hint}") from err
    report = render_report(summary)
    return write_run_page(cfg, parts, summary, report.text, report.images(), folder / REPORT_DIR)


def open_server(port: int = 0) -> http.server.ThreadingHTTPServer:
    """A server bound to 127.0.0.1:``port`` (0: a free one the system picks), made before the page is written so
    that a port out of range, in use or not permitted is refused with the folder as it was."""
    import errno

    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be a port number from 0 to 65535 (0: a free one), got {port}")
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"--port {port}: 127.0.0.1:{port} is in use; choose another port, or leave --port out for a free one"
            ) from None
        if err.errno == errno.EACCES:
            raise ConfigError(
                f"--port {port}: not permitted to listen on 127.0.0.1:{port} (ports below 1024 need privileges); "
                "choose another, or leave --port out for a free one"
            ) from None
        raise


def serve(page: Path, server: http.server.ThreadingHTTPServer) -> None:
    """Serve the page's folder from ``server`` (``open_server``) until interrupted."""
    server.RequestHandlerClass = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.parent))
    with server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/{page.name} (Ctrl-C stops)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:  # the way to stop it, not an error
            print("stopped serving")
