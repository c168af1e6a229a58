"""Stage ``download``: fetch or copy each lab's raw data, and verify it.

One folder per lab, whatever its source, so ``dvc.yaml`` names fixed paths:

- images (``data.images``): bundled digits, MNIST, Fashion-MNIST, CIFAR-10, or your image folder
  (links in it that lead outside it are refused unless ``data.follow_links``);
- anomaly (``data.anomaly``): bundled digits, ECG5000's ``ecg.csv``, or your CSV;
- text (``data.text``): gensim's bundled Lee corpus, Alice in Wonderland, or your text file;
- text evaluation: gensim's bundled WordSim-353, SimLex-999 and analogy files.

Remote files are checked against their published hash (see ``dllabs.data.sources.REMOTE``) and kept
in a user cache, so switching sources back and forth downloads nothing twice. Each download stops at
a size cap (a few times the file's own size), and one stopped or interrupted leaves no partial file
(``dllabs.data.fetch``). Your own files are checked as they are copied (folder layout, links, text
encoding and line ends), so errors name them. Every folder gets a ``manifest.json`` with the source
name and each file's SHA-256. Imports no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

from dllabs.data import sources
from dllabs.errors import stage_errors
from dllabs.outputs import staged_outputs
from dllabs.params import Data, load_params
from dllabs.stage_args import parse_paths


def fetch_images(data: Data, dest: Path) -> sources.Materialised:
    if data.images == "digits":
        return sources.write_digits(dest)
    if data.images == "folder":
        return sources.copy_image_folder(dest, data.images_dir, data.follow_links)
    return sources.copy_remote(dest, data.images)


def fetch_anomaly(data: Data, dest: Path) -> sources.Materialised:
    if data.anomaly == "digits":
        return sources.write_digits(dest)
    if data.anomaly == "csv":
        return sources.copy_file(dest, data.csv_path, "csv", key="data.csv_path")
    return sources.copy_remote(dest, "ecg5000", data.ecg_sha256)


def fetch_text(data: Data, dest: Path) -> sources.Materialised:
    if data.text == "lee":
        return sources.write_lee(dest)
    if data.text == "file":
        return sources.copy_file(dest, data.text_path, "file", key="data.text_path")
    return sources.copy_remote(dest, "alice", data.alice_sha256)


def main(argv: list[str] | None = None) -> None:
    with stage_errors("download"):
        params = load_params()
        args = parse_paths(
            argv,
            "download",
            __doc__,
            images="output folder, image labs",
            anomaly="output folder, anomaly lab",
            text="output folder, text corpus",
            text_eval="output folder, text evaluation sets",
        )
        with staged_outputs() as out:
            results = {
                args.images: fetch_images(params.data, out.dir(args.images)),
                args.anomaly: fetch_anomaly(params.data, out.dir(args.anomaly)),
                args.text: fetch_text(params.data, out.dir(args.text)),
                args.text_eval: sources.write_text_eval(out.dir(args.text_eval)),
            }
        for folder, result in results.items():
            print(f"download: {folder}: {result.source} ({len(result.manifest['files'])} file(s))")


if __name__ == "__main__":
    main()
