"""`fastseg download`."""

from __future__ import annotations

from pathlib import Path

import click

from cli.errors import user_errors


class ByteProgress:
    """A click progress bar that appears once the download's size is known."""

    def __init__(self) -> None:
        self.bar = None
        self.shown = 0

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="download", show_pos=False, width=40)
            self.bar.__enter__()
        self.bar.update(done - self.shown)
        self.shown = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.command(context_settings={"show_default": True})
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data"),
    help="Folder to hold VOCdevkit/VOC2012 (pass it to train as --data).",
)
@click.option(
    "--url", "urls", multiple=True, help="Download from this URL (repeatable) instead of the mirrors."
)
@click.option("--md5", default=None, help="Expected MD5 of the tar  [default: VOC 2012's]")
@user_errors
def command(root: Path, urls: tuple[str, ...], md5: str | None) -> None:
    """Download VOCtrainval_11-May-2012.tar (2 GB; resumable), check its MD5 and extract it safely.

    Offline? Put the tar in ROOT yourself and run this again: it is verified and extracted."""
    from dataclasses import replace

    from fastseg.download import VOC2012, download

    resource = replace(VOC2012, md5=md5) if md5 else VOC2012
    progress = ByteProgress()
    try:
        download(resource, root, urls=urls or None, progress=progress, log=click.echo)
    finally:
        progress.close()
    click.echo(f"VOC 2012 ready: fastseg train --data {root}")
