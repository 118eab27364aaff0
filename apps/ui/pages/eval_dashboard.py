"""Evaluation dashboard: start a benchmark run, follow its progress, browse results and samples, compare runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from apps.ui import common
from apps.ui.evals import (
    EvalRequest,
    leaderboard_table,
    load_runs,
    make_eval_work,
    metrics_table,
    run_label,
    runs_table,
    samples_table,
)
from apps.ui.jobs import JOBS, Job
from llm_backend.errors import RagentError

settings, status, state = common.page_start(eval_shown=set())

st.title("Evaluation")
run_tab, results_tab, board_tab = st.tabs(["Run a benchmark", "Results", "Leaderboard"])

# -- run -------------------------------------------------------------------------------------------------------------
with run_tab:
    from evaluation.registry import TaskRegistry

    try:
        tasks = TaskRegistry(settings.home)
        names = tasks.names()
    except RagentError as exc:
        common.show_error(exc, "Listing the benchmarks")
        names = []
    job: Job | None = JOBS.get(state.get("eval_job"))
    with st.form("eval_run", border=False):
        left, right = st.columns(2)
        if "eval_task" not in state and "gsm8k" in names:
            state["eval_task"] = "gsm8k"
        task = left.selectbox("Task", names, key="eval_task", help="Built-in tasks, and your own YAML files in <data home>/eval/tasks.")
        served = status["models"] or ([settings.model] if settings.model else [])
        model = right.selectbox("Model", served, key="eval_model", help="A model the server serves.", accept_new_options=True)
        limit = left.number_input("Samples (limit)", min_value=1, max_value=100_000, value=10, step=1, key="eval_limit")
        concurrency = right.number_input("Requests in flight", min_value=1, max_value=64, value=4, step=1, key="eval_concurrency")
        data_dir = st.text_input("Benchmark data folder", value=str(settings.data_dir or ""), key="eval_data_dir",
                                 help="Where the benchmark files are ($RAGENT_DATA). HumanEval needs none.")
        rerun = st.checkbox("Start over (discard a previous run with the same settings instead of resuming it)", key="eval_rerun")
        start = st.form_submit_button("Start the run", icon=":material/play_arrow:", type="primary", disabled=bool(job and job.running))

    if task:
        try:
            spec = tasks.get(task)
            st.caption(f"**{spec.name}** v{spec.version} · {spec.kind} · primary metric `{spec.primary_metric}` — {spec.description}")
        except RagentError as exc:
            common.show_error(exc, f"Reading task {task!r}")

    if start:
        if not status["ok"]:
            common.server_down_message(status)
        elif not task:
            st.warning("Choose a task first.")
        else:
            request = EvalRequest(task=task, model=model or None, limit=int(limit), concurrency=int(concurrency),
                                  data_dir=Path(data_dir).expanduser() if data_dir.strip() else None, rerun=rerun)
            job = JOBS.submit("eval", f"{task} on {model or 'the served model'} ({int(limit)} samples)", make_eval_work(settings, request))
            state["eval_job"] = job.id

    def _render_job(job_id: str) -> None:
        current = JOBS.get(job_id)
        if current is None:
            return
        if current.running:
            text = f"{current.title}: {current.done} of {current.total or '?'} samples" + (f" · {current.message}" if current.message else "")
            st.progress(current.fraction, text=text)
        elif current.status == "failed":
            st.error(f"**{current.title} failed.** {current.error}", icon=":material/error:")
        else:
            st.success(f"**{current.title}** finished in {current.seconds:.0f} s: {current.message}. See the Results tab.", icon=":material/task_alt:")
        for note in current.notes:
            st.warning(note, icon=":material/warning:")
        if not current.running and job_id not in state["eval_shown"]:
            state["eval_shown"].add(job_id)
            st.rerun(scope="app")  # the Results and Leaderboard tabs have a new run

    if job is not None:
        st.fragment(_render_job, run_every=1.0 if job.running else None)(job.id)

# -- results ---------------------------------------------------------------------------------------------------------
runs = load_runs(settings.home)
with results_tab:
    if not runs:
        st.info("No completed runs yet: start one in the first tab, or with `ragent eval run TASK --limit 20`.", icon=":material/hourglass_empty:")
    else:
        st.dataframe(pd.DataFrame(runs_table(runs)), hide_index=True, width="stretch")
        labels = [run_label(r) for _, r in runs]
        picked = st.selectbox("Run", range(len(runs)), format_func=labels.__getitem__, key="eval_pick")
        run_dir, result = runs[picked or 0]
        counts = result.counts
        cols = st.columns(4)
        primary = result.primary
        cols[0].metric(result.primary_metric, f"{100 * primary.value:.1f}%" if primary else "n/a",
                       help=f"± {100 * primary.stderr:.1f} (stderr)" if primary and primary.stderr else None)
        cols[1].metric("samples", counts.get("samples", 0))
        cols[2].metric("errors", counts.get("errors", 0))
        cols[3].metric("seconds", f"{result.timings.get('wall_s', 0):.0f}")
        if counts.get("errors"):
            st.warning(f"{counts['errors']} samples failed and are not in the averages; run the same settings again to retry them.")
        st.dataframe(pd.DataFrame(metrics_table(result)), hide_index=True)
        from evaluation.store import RunStore

        records = RunStore(run_dir).read_samples()
        st.markdown("**Samples**")
        only_wrong = st.toggle("Only misses and errors", key="eval_only_wrong")
        shown = [r for r in records if r.error or r.metrics.get(result.primary_metric) == 0.0] if only_wrong else records
        st.dataframe(pd.DataFrame(samples_table(shown, result.primary_metric)), hide_index=True, width="stretch")
        if shown:
            pick = st.selectbox("Sample details", [r.sample_id for r in shown], key="eval_sample")
            record = next(r for r in shown if r.sample_id == pick)
            with st.expander(f"Sample {record.sample_id}", expanded=False):
                st.json(record.to_dict(), expanded=2)
        st.caption(f"Run folder: `{run_dir}` (report.md and plots are written there)")

# -- leaderboard -----------------------------------------------------------------------------------------------------
with board_tab:
    rows, task_names = leaderboard_table(runs)
    if not rows:
        st.info("The leaderboard fills as runs complete: one row per model, one column per task.", icon=":material/leaderboard:")
    else:
        board = pd.DataFrame(rows)
        st.dataframe(board, hide_index=True, width="stretch")
        st.caption("Primary metric of each task (%), from the run with the most samples for each model and task.")
        long = board.melt(id_vars=["model"], value_vars=task_names, var_name="task", value_name="score (%)").dropna()
        st.bar_chart(long, x="task", y="score (%)", color="model", stack=False)
        history = pd.DataFrame(runs_table(runs)).dropna(subset=["value (%)"])
        if len(history) > 1:
            st.markdown("**All runs over time**")
            history["run of"] = history["task"] + " · " + history["model"]
            st.scatter_chart(history, x="finished", y="value (%)", color="run of")
