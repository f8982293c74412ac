"""Decoding response bodies: gzip, deflate, br and zstd, in bounded pieces.

A ``Decoder`` takes the body as it arrives and gives back the decoded bytes in pieces of about
``PIECE_SIZE`` at most, however much one compressed byte expands to: every decompressor here is
asked for that much output per call (zlib's and zstd's ``max_length``, exact; brotli's
``output_buffer_limit``, which may overshoot by one step of its buffer's growth). A reader that
counts the pieces against a limit therefore stops a decompression bomb after holding the limit
plus one piece, never the whole expansion.

``Content-Encoding: gzip, br`` says gzip was applied first, then br: the decoders run in the
reverse order. A coding not known here (or whose library is not installed) leaves the whole body
as it came. Corrupt or cut-short data raises ``DecodingError``.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ._errors import DecodingError

__all__ = ["ACCEPT_ENCODING", "PIECE_SIZE", "Decoder", "decoder_for"]

#: The most decoded bytes one call hands back.
PIECE_SIZE = 64 * 1024
#: zstd windows up to 8 MiB, the most RFC 9659 asks a client to accept: a frame that wants
#: more memory is refused rather than allocated.
ZSTD_WINDOW_LOG_MAX = 23

brotli: Any
try:
    import brotli  # type: ignore[import-untyped, no-redef, unused-ignore]

    # Only versions whose decompressor can bound its output (1.2 on): an older one could
    # expand a small body to any size in a single call.
    _HAS_BROTLI = hasattr(brotli.Decompressor(), "can_accept_more_data")
except ImportError:  # pragma: no cover - brotli is a test extra
    _HAS_BROTLI = False

_zstd: Any
try:
    from compression import zstd as _zstd  # type: ignore[import-not-found, no-redef, unused-ignore]
except ImportError:  # pragma: no cover - Python 3.14 has compression.zstd
    try:
        from backports import zstd as _zstd  # type: ignore[no-redef, unused-ignore]
    except ImportError:  # pragma: no cover - backports.zstd is a test extra
        _zstd = None


class Decoder(Protocol):
    """One content coding's decoder, fed the body piece by piece."""

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes ``data`` gives, in pieces of about ``PIECE_SIZE`` at most."""

    def flush(self) -> Iterator[bytes]:
        """What is left once the body has ended; ``DecodingError`` if it was cut short."""


class _ZlibDecoder:
    """gzip (one member after another, as a gzip file may hold) and deflate: zlib's format or,
    as some servers send it, raw deflate data with no zlib wrapper."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._wbits = zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS
        self._object = zlib.decompressobj(self._wbits)
        self._started = False  # any data fed
        # Deflate's input until the format is settled, to feed again as raw deflate if the
        # zlib header turns out to be missing (zlib says so within the first two bytes).
        self._fed: bytes | None = b"" if coding == "deflate" else None

    def decode(self, data: bytes) -> Iterator[bytes]:
        if data:
            self._started = True
        if self._fed is not None:
            self._fed += data
        while data:
            try:
                piece = self._object.decompress(data, PIECE_SIZE)
            except zlib.error as exc:
                if self._fed is not None and self._wbits > 0:
                    self._wbits = -zlib.MAX_WBITS  # no zlib header: raw deflate
                    self._object = zlib.decompressobj(self._wbits)
                    data = self._fed
                    continue
                raise DecodingError(f"the {self._coding} body is corrupt: {exc}") from exc
            if piece or self._object.eof or (self._fed is not None and len(self._fed) > 2):
                self._fed = None  # the format is settled
            if piece:
                yield piece
            data = self._object.unconsumed_tail
            if self._object.eof:
                data = self._object.unused_data
                if data and self._coding != "gzip":
                    return  # bytes after the end of a deflate stream are not part of it
                if data:
                    self._object = zlib.decompressobj(self._wbits)  # the next gzip member
            elif not data and len(piece) == PIECE_SIZE:
                yield from self._drain()

    def _drain(self) -> Iterator[bytes]:
        # The output filled a piece: more may be pending without any further input.
        while True:
            try:
                piece = self._object.decompress(b"", PIECE_SIZE)
            except zlib.error as exc:
                raise DecodingError(f"the {self._coding} body is corrupt: {exc}") from exc
            if piece:
                yield piece
            if len(piece) < PIECE_SIZE:
                return

    def flush(self) -> Iterator[bytes]:
        yield from self._drain()
        if self._started and not self._object.eof:
            raise DecodingError(f"the {self._coding} body ended before its compressed data did")


class _BrotliDecoder:
    def __init__(self) -> None:
        self._object = brotli.Decompressor()
        self._started = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if not data:
            return
        self._started = True
        try:
            piece = self._object.process(data, output_buffer_limit=PIECE_SIZE)
            while True:
                if piece:
                    yield piece
                # A full buffer may leave output pending even when the decompressor says it
                # can take more input: ask again until it gives less than a full piece.
                if len(piece) < PIECE_SIZE and self._object.can_accept_more_data():
                    return
                piece = self._object.process(b"", output_buffer_limit=PIECE_SIZE)
        except brotli.error as exc:
            raise DecodingError(f"the br body is corrupt: {exc}") from exc

    def flush(self) -> Iterator[bytes]:
        if self._started and not self._object.is_finished():
            raise DecodingError("the br body ended before its compressed data did")
        return iter(())


class _ZstdDecoder:
    def __init__(self) -> None:
        self._object = self._new()
        self._started = False

    @staticmethod
    def _new() -> Any:
        window = {_zstd.DecompressionParameter.window_log_max: ZSTD_WINDOW_LOG_MAX}
        return _zstd.ZstdDecompressor(options=window)

    def decode(self, data: bytes) -> Iterator[bytes]:
        if data:
            self._started = True
        try:
            while data or not self._object.needs_input:
                piece = self._object.decompress(data, PIECE_SIZE)
                data = b""
                if piece:
                    yield piece
                if self._object.eof:
                    data = self._object.unused_data
                    self._object = self._new()  # the next frame, if there is one
                    self._started = bool(data)
        except _zstd.ZstdError as exc:
            raise DecodingError(f"the zstd body is corrupt: {exc}") from exc

    def flush(self) -> Iterator[bytes]:
        if self._started:
            raise DecodingError("the zstd body ended before its compressed data did")
        return iter(())


_DECODERS: dict[str, Callable[[], Decoder]] = {
    "gzip": lambda: _ZlibDecoder("gzip"),
    "x-gzip": lambda: _ZlibDecoder("gzip"),
    "deflate": lambda: _ZlibDecoder("deflate"),
}
if _HAS_BROTLI:
    _DECODERS["br"] = _BrotliDecoder
if _zstd is not None:
    _DECODERS["zstd"] = _ZstdDecoder

#: What the agent asks for unless the caller sets ``Accept-Encoding``: what it can decode.
ACCEPT_ENCODING = ", ".join(c for c in ("gzip", "deflate", "br", "zstd") if c in _DECODERS)


class _Chain:
    """Several codings, undone from the last applied to the first."""

    def __init__(self, decoders: list[Decoder]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes) -> Iterator[bytes]:
        return self._through(0, self._decoders[0].decode(data))

    def flush(self) -> Iterator[bytes]:
        return self._flush_from(0)

    def _through(self, index: int, pieces: Iterator[bytes]) -> Iterator[bytes]:
        if index + 1 == len(self._decoders):
            yield from pieces
            return
        for piece in pieces:
            yield from self._through(index + 1, self._decoders[index + 1].decode(piece))

    def _flush_from(self, index: int) -> Iterator[bytes]:
        yield from self._through(index, self._decoders[index].flush())
        if index + 1 < len(self._decoders):
            yield from self._flush_from(index + 1)


def decoder_for(content_encoding: str) -> Decoder | None:
    """The decoder for a ``Content-Encoding`` header's value; None when there is nothing to
    decode, or a coding is not one this agent can decode (the body is then left as sent)."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings or any(c not in _DECODERS for c in codings):
        return None
    decoders = [_DECODERS[c]() for c in reversed(codings)]
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)
