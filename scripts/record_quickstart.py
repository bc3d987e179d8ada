"""The README's quick-start figures, from files: run the quick start, keep its results in
results/quickstart/, and write the README paragraph from them.

    python scripts/record_quickstart.py --run     # bash scripts/quickstart.sh, then record and write
    python scripts/record_quickstart.py           # only rewrite the README paragraph from the files

results/quickstart/ holds results.json, hdl_refresh.jsonl and summary.json (scripts/summary.py
--json); tests/test_ecosystem.py checks that the README paragraph is the one these files give.
"""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "results", "quickstart")
RUN = os.path.join(ROOT, "saved_models", "digits", "quickstart")
START, END = "<!-- quickstart-figures:start -->", "<!-- quickstart-figures:end -->"


def paragraph(summary: dict) -> str:
    """The README's quick-start sentence from ``summary.json``."""
    s = summary
    return (f"On this 2-core machine it trained HDL-FixMatch for {s['iterations']} iterations in "
            f"{s['wall_seconds']:.0f} s. Test accuracy at the best-validation checkpoint: "
            f"**{100 * s['test_acc_at_best_val']:.1f}%** ({100 * s['test_acc_final']:.1f}% at the end; worst class "
            f"{100 * s['test_worst_class_acc_at_best_val']:.1f}%); floors on the same split: logistic regression "
            f"{100 * s['floor_logreg']:.1f}%, LabelSpreading {100 * s['floor_labelspreading']:.1f}%. At the last "
            f"refresh the HDL labels were {100 * s['hdl_pool_acc']:.1f}% accurate on "
            f"{100 * s['hdl_pool_coverage']:.0f}% of the unlabeled images, against "
            f"{100 * s['hdl_logit_acc_equal_coverage']:.1f}% for the model's own most confident pseudo-labels on as "
            f"many images (source: [results/quickstart](results/quickstart/summary.json), written by "
            f"`python scripts/record_quickstart.py --run`).")


def record() -> None:
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "quickstart.sh"), "--no-progress"], check=True, cwd=ROOT)
    os.makedirs(OUT, exist_ok=True)
    for name in ("results.json", "hdl_refresh.jsonl"):
        shutil.copyfile(os.path.join(RUN, name), os.path.join(OUT, name))
    py = os.path.join(ROOT, ".venv", "bin", "python")
    text = subprocess.run([py if os.path.exists(py) else sys.executable, os.path.join(ROOT, "scripts", "summary.py"),
                           RUN, "--json"], check=True, capture_output=True, text=True).stdout
    with open(os.path.join(OUT, "summary.json"), "w") as f:
        f.write(json.dumps(json.loads(text.strip().splitlines()[-1]), indent=2) + "\n")


def write_readme() -> None:
    with open(os.path.join(OUT, "summary.json")) as f:
        summary = json.load(f)
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path + ".tmp", "w") as f:
        f.write(head + START + "\n" + paragraph(summary) + "\n" + END + tail)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    if "--run" in sys.argv[1:]:
        record()
    write_readme()
