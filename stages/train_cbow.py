"""Stage ``train_cbow`` (lab 4: word embeddings with CBOW).

Read the tokenized corpus (one sentence per line; one longer than the 10,000 words gensim reads
is cut into pieces); refuse, before training, a ``cbow.min_count`` that leaves fewer words than
``evaluate_cbow`` can evaluate; train Word2Vec in CBOW mode (``sg=0``: the averaged context
vectors predict the centre word) with the ``cbow`` params, logging the loss of every epoch with
DVCLive; train gensim's defaults on the same corpus as a baseline; save the full model (with the
output weights ``predict_output_word`` needs) and the baseline's word vectors as ``.npy`` arrays
and JSON (``dllabs.models.word2vec_files``: nothing a reader loads can run code).

``cbow.engine: gensim`` (the default) imports no TensorFlow. ``cbow.engine: keras`` trains the same
model written in Keras layers (``dllabs.labs.keras_cbow``) and packs its weights into a gensim
model, so evaluation and probes are the same code for both engines.
"""

from __future__ import annotations

if __name__ == "__main__":  # run as a stage: Keras's backend and the cluster come before Keras
    from dllabs.training.startup import start_keras_stage

    start_keras_stage("train_cbow", import_keras=False)  # only cbow.engine: keras imports it

import time

from dllabs.errors import stage_errors
from dllabs.labs.word2vec import (
    MAX_SENTENCE_WORDS,
    check_vocabulary,
    read_corpus,
    split_long_sentences,
    train_cbow,
)
from dllabs.models.word2vec_files import save_vectors, save_word2vec
from dllabs.outputs import save_json, staged_outputs
from dllabs.params import load_params
from dllabs.provenance import platform_record
from dllabs.stage_args import parse_paths


def main(argv: list[str] | None = None) -> None:
    with stage_errors("train_cbow"):
        params = load_params()
        args = parse_paths(
            argv,
            "train_cbow",
            __doc__,
            corpus="tokenized corpus (one sentence per line)",
            model="output folder (models)",
            plots="output DVCLive folder",
        )
        sentences, split = split_long_sentences(read_corpus(args.corpus))
        check_vocabulary(sentences, params.cbow.min_count, args.corpus)
        from dvclive import Live

        with staged_outputs() as out:
            live = Live(dir=str(out.dir(args.plots)), dvcyaml=False, save_dvc_exp=False)

            def log_loss(epoch: int, loss: float) -> None:
                live.log_metric("train/loss", loss)
                live.next_step()

            engine, device = train_cbow, "CPU (gensim)"
            if params.cbow.engine == "keras":
                from dllabs.labs.keras_cbow import train_keras_cbow as engine
                from dllabs.training.devices import setup_run

                device = setup_run(params.base).description
            start = time.perf_counter()
            model = engine(sentences, params.cbow, params.base.seed, on_epoch_loss=log_loss)
            seconds = time.perf_counter() - start
            live.end()
            baseline = train_cbow(sentences, None, params.base.seed)
            folder = out.dir(args.model)
            save_word2vec(model, folder / "word2vec")
            save_vectors(baseline.wv, folder / "baseline")
            save_json(
                folder / "training.json",
                {
                    "vocab_size": len(model.wv),
                    "corpus_tokens": int(model.corpus_total_words),
                    "sentences": len(sentences),
                    "sentences_split": split,  # longer than MAX_SENTENCE_WORDS, cut into pieces
                    "final_loss": float(live.summary.get("train", {}).get("loss", 0.0)),
                    "baseline_vocab_size": len(baseline.wv),
                    "engine": params.cbow.engine,
                    "device": device,
                    "train_seconds": round(seconds, 2),
                    "platform": platform_record(),
                },
            )
        if split:
            print(
                f"train_cbow: {split} sentence(s) longer than {MAX_SENTENCE_WORDS:,} words were "
                "cut into pieces, which gensim trains on whole"
            )
        print(f"train_cbow: vocabulary {len(model.wv)}, baseline vocabulary {len(baseline.wv)}")


if __name__ == "__main__":
    main()
