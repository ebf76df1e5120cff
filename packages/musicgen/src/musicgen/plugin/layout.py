"""The tensors of a transformers-format MusicGen checkpoint: names and shapes from config.json.

The names are those of the facebook/musicgen-* repos (weight norm stored as weight_g/weight_v),
so a checkpoint written from this layout loads in musicgen and in transformers alike. The
layout also gives exact parameter counts, from which the plugin estimates model sizes.
"""

from __future__ import annotations

import math

from musicgen.config import MusicGenConfig

Shapes = dict[str, tuple[int, ...]]


def checkpoint_shapes(config: dict) -> Shapes:
    """Every tensor name of a checkpoint with this config.json content, and its shape."""
    from musicgen.encodec import EncodecConfig

    parsed = MusicGenConfig.from_dict(config)
    shapes: Shapes = {}
    shapes.update(_t5_shapes(parsed))
    shapes.update(_decoder_shapes(parsed))
    codec = EncodecConfig.from_dict(parsed.audio_encoder)
    shapes.update({f"audio_encoder.{k}": v for k, v in _encodec_shapes(codec).items()})
    return shapes


def parameter_count(config: dict) -> int:
    """The number of parameters (buffers included) of a checkpoint with this config."""
    return sum(math.prod(shape) for shape in checkpoint_shapes(config).values())


def _t5_shapes(config: MusicGenConfig) -> Shapes:
    t5 = config.text_encoder
    inner = t5.num_heads * t5.d_kv
    shapes: Shapes = {"text_encoder.shared.weight": (t5.vocab_size, t5.d_model)}
    for i in range(t5.num_layers):
        block = f"text_encoder.encoder.block.{i}.layer"
        for name in "qkv":
            shapes[f"{block}.0.SelfAttention.{name}.weight"] = (inner, t5.d_model)
        shapes[f"{block}.0.SelfAttention.o.weight"] = (t5.d_model, inner)
        if i == 0:
            buckets = t5.relative_attention_num_buckets
            shapes[f"{block}.0.SelfAttention.relative_attention_bias.weight"] = (
                buckets,
                t5.num_heads,
            )
        shapes[f"{block}.0.layer_norm.weight"] = (t5.d_model,)
        ins = ("wi_0", "wi_1") if t5.is_gated else ("wi",)
        for name in ins:
            shapes[f"{block}.1.DenseReluDense.{name}.weight"] = (t5.d_ff, t5.d_model)
        shapes[f"{block}.1.DenseReluDense.wo.weight"] = (t5.d_model, t5.d_ff)
        shapes[f"{block}.1.layer_norm.weight"] = (t5.d_model,)
    shapes["text_encoder.encoder.final_layer_norm.weight"] = (t5.d_model,)
    return shapes


def _decoder_shapes(config: MusicGenConfig) -> Shapes:
    dec, d = config.decoder, config.decoder.hidden_size
    shapes: Shapes = {}
    for k in range(dec.num_codebooks):
        shapes[f"decoder.lm_heads.{k}.weight"] = (dec.vocab_size, d)
        shapes[f"decoder.model.decoder.embed_tokens.{k}.weight"] = (dec.vocab_size + 1, d)
    root = "decoder.model.decoder"
    shapes[f"{root}.layer_norm.weight"] = shapes[f"{root}.layer_norm.bias"] = (d,)
    # MusicGen-Melody's layers have no cross-attention (its conditioning is a prefix).
    attentions = [("self_attn", d)]
    if not config.is_melody:
        attentions.append(("encoder_attn", dec.cross_attention_hidden_size or d))
    for i in range(dec.num_hidden_layers):
        layer = f"{root}.layers.{i}"
        for attn, width in attentions:
            shapes[f"{layer}.{attn}.q_proj.weight"] = (d, d)
            shapes[f"{layer}.{attn}.k_proj.weight"] = (d, width)
            shapes[f"{layer}.{attn}.v_proj.weight"] = (d, width)
            shapes[f"{layer}.{attn}.out_proj.weight"] = (d, d)
            shapes[f"{layer}.{attn}_layer_norm.weight"] = (d,)
            shapes[f"{layer}.{attn}_layer_norm.bias"] = (d,)
        shapes[f"{layer}.final_layer_norm.weight"] = shapes[f"{layer}.final_layer_norm.bias"] = (d,)
        shapes[f"{layer}.fc1.weight"] = (dec.ffn_dim, d)
        shapes[f"{layer}.fc2.weight"] = (d, dec.ffn_dim)
    if config.projects_text:
        shapes["enc_to_dec_proj.weight"] = (d, config.text_encoder.d_model)
        shapes["enc_to_dec_proj.bias"] = (d,)
    if config.is_melody and config.num_chroma != d:
        shapes["audio_enc_to_dec_proj.weight"] = (d, config.num_chroma)
        shapes["audio_enc_to_dec_proj.bias"] = (d,)
    return shapes


def _encodec_shapes(codec) -> Shapes:
    """EnCodec's SEANet encoder and decoder and its residual quantizer (transformers' order)."""
    shapes: Shapes = {}
    filters, scale = codec.num_filters, 1
    # Encoder: conv, then per ratio residual blocks + strided conv, then LSTM and a last conv.
    encoder: list = [("conv", codec.audio_channels, filters, codec.kernel_size)]
    for ratio in reversed(codec.upsampling_ratios):
        width = scale * filters
        encoder += [("res", width)] * codec.num_residual_layers
        encoder += [("elu",), ("conv", width, 2 * width, 2 * ratio)]
        scale *= 2
    encoder += [("lstm", scale * filters), ("elu",),
                ("conv", scale * filters, codec.hidden_size, codec.last_kernel_size)]
    decoder: list = [("conv", codec.hidden_size, scale * filters, codec.kernel_size),
                     ("lstm", scale * filters)]
    for ratio in codec.upsampling_ratios:
        width = scale * filters
        decoder += [("elu",), ("convT", width, width // 2, 2 * ratio)]
        decoder += [("res", width // 2)] * codec.num_residual_layers
        scale //= 2
    decoder += [("elu",), ("conv", filters, codec.audio_channels, codec.last_kernel_size)]
    for part, modules in (("encoder", encoder), ("decoder", decoder)):
        for i, module in enumerate(modules):
            shapes.update(_seanet_module(codec, f"{part}.layers.{i}", module))
    for q in range(codec.num_quantizers):
        book = f"quantizer.layers.{q}.codebook"
        shapes[f"{book}.inited"] = (1,)
        shapes[f"{book}.cluster_size"] = (codec.codebook_size,)
        shapes[f"{book}.embed"] = shapes[f"{book}.embed_avg"] = (
            codec.codebook_size,
            codec.codebook_dim,
        )
    return shapes


def _seanet_module(codec, name: str, module: tuple) -> Shapes:
    kind = module[0]
    if kind == "elu":
        return {}
    if kind == "conv":
        return _conv(codec, f"{name}.conv", *module[1:])
    if kind == "convT":
        return _conv(codec, f"{name}.conv", *module[1:], transposed=True)
    if kind == "lstm":
        width, shapes = module[1], {}
        for n in range(codec.num_lstm_layers):
            shapes[f"{name}.lstm.weight_ih_l{n}"] = (4 * width, width)
            shapes[f"{name}.lstm.weight_hh_l{n}"] = (4 * width, width)
            shapes[f"{name}.lstm.bias_ih_l{n}"] = (4 * width,)
            shapes[f"{name}.lstm.bias_hh_l{n}"] = (4 * width,)
        return shapes
    # A residual block: ELU, conv to dim // compress, ELU, conv back (+ a 1x1 shortcut conv).
    dim = module[1]
    hidden = dim // codec.compress
    shapes = _conv(codec, f"{name}.block.1.conv", dim, hidden, codec.residual_kernel_size)
    shapes.update(_conv(codec, f"{name}.block.3.conv", hidden, dim, 1))
    if codec.use_conv_shortcut:
        shapes.update(_conv(codec, f"{name}.shortcut.conv", dim, dim, 1))
    return shapes


def _conv(codec, name: str, cin: int, cout: int, kernel: int, transposed: bool = False) -> Shapes:
    weight = (cin, cout, kernel) if transposed else (cout, cin, kernel)
    shapes: Shapes = {f"{name}.bias": (cout,)}
    if codec.norm_type == "weight_norm":
        shapes[f"{name}.weight_g"] = (weight[0], 1, 1)
        shapes[f"{name}.weight_v"] = weight
    else:  # time_group_norm: a plain conv followed by a GroupNorm(1, cout)
        shapes[f"{name}.weight"] = weight
        shapes[f"{name.removesuffix('.conv')}.norm.weight"] = (cout,)
        shapes[f"{name.removesuffix('.conv')}.norm.bias"] = (cout,)
    return shapes
