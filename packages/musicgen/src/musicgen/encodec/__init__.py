"""EnCodec, MusicGen's audio codec, in MLX: codes <-> audio, whole clips or streamed."""

from musicgen.encodec.config import EncodecConfig
from musicgen.encodec.model import EncodecModel
from musicgen.encodec.streaming import StreamingDecoder

__all__ = ["EncodecConfig", "EncodecModel", "StreamingDecoder"]
