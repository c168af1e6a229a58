"""Stage ``evaluate_cbow``: lab 4 (the CBOW word vectors and gensim's default baseline).

Score both sets of vectors on gensim's bundled WordSim-353, SimLex-999 and Google analogy files
(with how many pairs were out of vocabulary), write a probe report (``most_similar`` and
``predict_output_word``, the lab's two questions) and a PCA plot of the most frequent words.
Imports no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from dllabs.errors import DataError, stage_errors
from dllabs.evaluation.reports import run_info
from dllabs.labs.word2vec import MIN_VOCABULARY, evaluate_vectors, pca_plot, probe_report
from dllabs.models.word2vec_files import load_vectors, load_word2vec
from dllabs.outputs import load_json, save_json, staged_outputs
from dllabs.params import CBOW, load_params
from dllabs.stage_args import parse_paths


def evaluate_cbow(model_dir: Path, eval_dir: Path, params: CBOW, plots: Path, report: Path) -> dict:
    """Similarity and analogy scores of the CBOW vectors and the baseline, probes and PCA plot."""
    model = load_word2vec(model_dir / "word2vec")
    if len(model.wv) < MIN_VOCABULARY:  # train_cbow refuses these; a model from before did not
        raise DataError(
            f"{model_dir / 'word2vec'}: {len(model.wv)} word{'' if len(model.wv) == 1 else 's'} "
            f"in the vocabulary; its PCA map needs at least {MIN_VOCABULARY}; retrain with a lower "
            "cbow.min_count (dvc repro train_cbow)"
        )
    baseline = load_vectors(model_dir / "baseline")
    training = load_json(model_dir / "training.json")
    report.write_text(probe_report(model, params.probe_words, params.probe_contexts), "utf-8")
    pca_plot(
        model.wv,
        params.pca_words,
        plots / "pca.png",
        f"CBOW vectors of the {params.pca_words} most frequent words (PCA)",
    )
    return {
        "engine": training["engine"],
        "run": run_info(training),
        "vocab_size": training["vocab_size"],
        "corpus_tokens": training["corpus_tokens"],
        "final_loss": training["final_loss"],
        **evaluate_vectors(model.wv, eval_dir),
        "baseline": {"vocab_size": len(baseline), **evaluate_vectors(baseline, eval_dir)},
    }


def main(argv: list[str] | None = None) -> None:
    with stage_errors("evaluate_cbow"):
        params = load_params()
        args = parse_paths(
            argv,
            "evaluate_cbow",
            __doc__,
            model="CBOW model folder",
            text_eval="word-similarity and analogy sets folder",
            metrics="output metrics (.json)",
            report="output probe report (.md)",
            plots="output plots folder",
        )
        with staged_outputs() as out:
            metrics = evaluate_cbow(
                args.model, args.text_eval, params.cbow, out.dir(args.plots), out.file(args.report)
            )
            save_json(out.file(args.metrics), metrics)
        ws, base = metrics["wordsim353"], metrics["baseline"]["wordsim353"]
        print(
            f"evaluate_cbow: WordSim-353 Spearman {ws['spearman']} (OOV {ws['oov']:.0%}), "
            f"baseline {base['spearman']}"
        )


if __name__ == "__main__":
    main()
