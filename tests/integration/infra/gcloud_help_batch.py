"""`gcloud <path> --help` for many paths in ONE interpreter: python3 gcloud_help_batch.py SDK_LIB OUT.json PATH...
or, walking whole command lines: python3 gcloud_help_batch.py SDK_LIB OUT.json --walk WORDS...

Each PATH is a command path with words joined by "/" ("" = gcloud itself). With --walk, each WORDS is a JSON list
of a command line's words (command_words): the help of gcloud, then of each group the next word names, down to
the command, as the test walks them, so every depth is rendered in this one interpreter (each depth in a batch of
its own cost one more start of the CLI, ~1.6 s). The Google Cloud CLI is loaded once
(gcloud_main.CreateCLI, what bin/gcloud runs for every invocation) and each path's help is rendered by the CLI's own
Execute([..., "--help"]), the same call a `gcloud ... --help` process makes; its output is captured by pointing the
CLI's log streams at a buffer. OUT.json gets {PATH: help text, or "" when the CLI refused the path}.

Run with the interpreter gcloud itself would use; imports nothing of this project. Why: a gcloud process costs
about 0.7 s of start-up, and the runbook check asks for some sixty help texts.
"""
from __future__ import annotations

import io
import json
import sys


def main(sdk_lib: str, out_path: str, paths: list[str]) -> int:
    sys.path.insert(0, sdk_lib)
    import gcloud  # the SDK's lib/gcloud.py: the same sys.path fixes bin/gcloud applies

    sys.path = gcloud.reorder_sys_path(sys.path)
    gcloud._fix_google_module()
    gcloud_main = gcloud._import_gcloud_main()
    from googlecloudsdk.core import log

    cli = gcloud_main.CreateCLI([])
    texts: dict[str, str] = {}

    def text(path: str) -> str:
        if path in texts:
            return texts[path]
        out, err = io.StringIO(), io.StringIO()
        log.Reset(out, err)
        try:
            cli.Execute([*(path.split("/") if path else []), "--help"])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        except Exception:  # noqa: BLE001 - a refused path is an answer ("" below), as a failing process is
            code = 1
        finally:
            log.Reset(sys.__stdout__, sys.__stderr__)
        texts[path] = out.getvalue() if code == 0 else ""
        return texts[path]

    if paths[:1] == ["--walk"]:
        from gcloud_help_text import children, plain

        for words in map(json.loads, paths[1:]):
            path: list[str] = []
            names = children(plain(text("")))
            for word in words:
                if word not in names:  # a command reached (no names), or a word it lacks: the walk ends here
                    break
                path.append(word)
                names = children(plain(text("/".join(path))))
    else:
        for path_text in paths:
            text(path_text)
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(texts, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
