from __future__ import annotations

import pytest

from roomtape.media.room import InvalidOfferError, UnsupportedCodecError, check_publish_offer

HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def section(kind: str, mid: str, codecs: list[str], direction: str = "sendonly") -> str:
    pts = [str(96 + i) for i in range(len(codecs))]
    lines = [f"m={kind} 9 UDP/TLS/RTP/SAVPF {' '.join(pts)}", f"a=mid:{mid}", f"a={direction}"]
    lines += [f"a=rtpmap:{pt} {codec}" for pt, codec in zip(pts, codecs, strict=True)]
    return "\r\n".join(lines) + "\r\n"


def test_sending_sections_with_a_forwardable_codec_pass() -> None:
    offer = (
        HEAD + section("audio", "0", ["opus/48000/2", "PCMU/8000"]) + section("video", "1", ["H264/90000", "rtx/90000"])
    )
    offer += section("video", "2", ["VP8/90000"], direction="recvonly")
    assert [s.mid for s in check_publish_offer(offer)] == ["0", "1"]


@pytest.mark.parametrize(
    ("offer", "error", "text"),
    [
        ("", InvalidOfferError, "malformed SDP"),
        ("hello", InvalidOfferError, "malformed SDP"),
        (HEAD, InvalidOfferError, "no audio or video section sends media"),
        (HEAD + section("video", "0", ["VP8/90000"], direction="recvonly"), InvalidOfferError, "no audio or video"),
        (
            HEAD + section("video", "0", ["H265/90000", "rtx/90000"]),
            UnsupportedCodecError,
            "video section 0 offers video/H265",
        ),
        (HEAD + section("audio", "a", ["G722/8000"]), UnsupportedCodecError, "audio section a offers audio/G722"),
    ],
)
def test_offers_roomtape_cannot_take_are_refused_with_a_reason(offer: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        check_publish_offer(offer)


def test_unsupported_codec_message_names_what_is_forwarded() -> None:
    with pytest.raises(UnsupportedCodecError) as refused:
        check_publish_offer(HEAD + section("video", "0", ["H265/90000"]))
    assert str(refused.value) == (
        "no codec roomtape can forward: video section 0 offers video/H265; roomtape forwards video/h264, video/vp8"
    )
