"""`fastseg download`, and the bar that shows its bytes (the library only reports them)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cli.errors import user_errors
from cli.options import verbose_option
from cli.output import say

# Neither module imports torch at the top (voc, sbd: numpy and the standard library), so the
# defaults are shown in `--help` at once.
from fastseg.data.sbd import SBD_MD5, SBD_URLS
from fastseg.data.voc import VOC_MD5, VOC_URLS
from fastseg.errors import quoted, shown


def md5_text(context: click.Context, option: click.Parameter, value: str) -> str:
    """An expected MD5 is 32 hex digits: checked as the options are read, so a typo in --sbd-md5
    is refused before the 2 GB VOC tar is fetched (the library checks each only at its own turn)."""
    from fastseg.data.download import MD5_TEXT

    if not MD5_TEXT.fullmatch(value):
        raise click.BadParameter(f"{quoted(shown(value), 80)} is no MD5 (32 hexadecimal digits)")
    return value


@click.command(context_settings={"show_default": True})
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("data"),
    help="Folder to hold VOCdevkit/VOC2012 (pass it to train as --data).",
)
@click.option(
    "--url",
    "urls",
    multiple=True,
    default=VOC_URLS,
    show_default="the official host, then 2 mirrors",
    help="URL of the tar; repeat it to give fallbacks, tried in order.",
)
@click.option(
    "--md5",
    default=VOC_MD5,
    callback=md5_text,
    help="Expected MD5 of the tar (for a mirror of another file).",
)
@click.option("--sbd", is_flag=True, help="Also fetch SBD (1.4 GB) and build the 10,582-id trainaug list.")
@click.option("--sbd-url", "sbd_urls", multiple=True, default=SBD_URLS, show_default="Berkeley's host")
@click.option("--sbd-md5", default=SBD_MD5, callback=md5_text, help="Expected MD5 of benchmark.tgz.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@verbose_option
@user_errors
def command(
    root: Path,
    urls: tuple[str, ...],
    md5: str,
    sbd: bool,
    sbd_urls: tuple[str, ...],
    sbd_md5: str,
    quiet: bool,
) -> None:
    """Download VOCtrainval_11-May-2012.tar (2 GB; resumable), check its MD5 and extract it safely.

    Offline? Put the tar in ROOT yourself and run this again: it is verified and extracted, and
    no network is used. Data already extracted in ROOT is left alone."""
    from fastseg.data.voc import download_voc

    bars = None if quiet else ByteBar
    folder = download_voc(root, urls=urls, md5=md5, progress=bars, log=say)
    say(f"VOC 2012 ready in {folder}: fastseg train --data {root}")
    if sbd:
        from fastseg.data.sbd import download_sbd
        from fastseg.data.voc import VOCFolder

        ids = download_sbd(root, VOCFolder(folder), urls=sbd_urls, md5=sbd_md5, progress=bars, log=say)
        say(f"trainaug ready ({len(ids)} ids): fastseg train --data {root} --train-set trainaug")


class ByteBar:
    """Download progress in MB for one request, opened at the first report, when the size is known:
    a click bar on a terminal; in a log file, where a bar's redraws pile up as fragments, a plain
    `NAME: 512 / 1999 MB` line now and then (`fastseg.progress_lines`) and one at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None
        self.total: int | None = None
        self.shown = 0
        self.throttle: Any = None
        self.counting: int | None = None  # bytes shown by the count of a download of unknown size

    def __call__(self, done: int, total: int | None) -> None:
        if not sys.stdout.isatty():
            self._line(done, total, say)
            return
        if total is None:  # no Content-Length: click draws no bar without a length (a TypeError)
            self._count(done)
            return
        if self.bar is None or total != self.total or done < self.shown:
            self.close()
            self.total = total
            length = None if total is None else max(1, total >> 20)
            self.bar = click.progressbar(length=length, label=f"{self.label} (MB)", width=40, show_pos=True)
            self.bar.__enter__()
            self.shown = 0
        step = (done >> 20) - (self.shown >> 20)
        if step:
            self.bar.update(step)
        self.shown = done

    def _line(self, done: int, total: int | None, echo: Callable[[str], None]) -> None:
        from fastseg.progress_lines import LineThrottle

        if self.throttle is None or total != self.total:
            self.throttle, self.total = LineThrottle(), total
        if self.throttle.due(done, total):
            of = "" if total is None else f" / {total >> 20}"
            echo(f"{self.label}: {done >> 20}{of} MB")

    def _count(self, done: int) -> None:
        """A download of unknown size on a terminal: its megabytes so far, redrawn in place."""
        if self.bar is not None or self.total is not None:  # a bar of a known size was drawn before
            self.close()
            self.total = None
        if self.counting is None or done >> 20 != self.counting >> 20:
            click.echo(f"\r{self.label}: {done >> 20} MB", nl=False)
        self.counting = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
        if self.counting is not None:  # the count's line ends
            click.echo()
            self.counting = None
