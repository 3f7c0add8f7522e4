"""all-MiniLM-L6-v2 in plain numpy: safetensors loader, BERT WordPiece
tokenizer and the 6-layer encoder with mean pooling and L2 normalisation.

Nothing here keeps a file open or mapped: the safetensors file is read into
memory and closed, so a checkpointed server holds its weights as anonymous
memory only.
"""

import json
import math
import os
import struct
import sys
import unicodedata

import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_SEQ_LEN = 256  # sentence_bert_config.json: max_seq_length

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
_MAX_HEADER = 100 * 1024 * 1024


def default_model_dir():
    """Where scripts/setup.sh unpacks the model: VENV/share/all-MiniLM-L6-v2."""
    return os.path.join(sys.prefix, "share", MODEL_NAME)


def load_safetensors(path):
    """Read a safetensors file: u64 LE header length, JSON header, raw data.

    Returns {name: ndarray}; every array owns its memory and the file is
    closed on return.
    """
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        (hlen,) = struct.unpack("<Q", raw)
        if hlen > _MAX_HEADER:
            raise ValueError(f"{path}: header length {hlen} too large")
        header = json.loads(f.read(hlen))
        data = f.read()
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name}: dtype {info['dtype']} not supported")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = math.prod(shape)
        if end - begin != count * np.dtype(dtype).itemsize or end > len(data):
            raise ValueError(f"{path}: tensor {name}: bad data offsets {begin}..{end}")
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=begin)
        tensors[name] = arr.reshape(shape).copy()
    return tensors


# --- tokenizer ---------------------------------------------------------------


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese(cp):
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPieceTokenizer:
    """BERT uncased tokenizer, as tokenizer.json describes it: BertNormalizer
    (clean text, CJK spacing, lowercase, strip accents), BertPreTokenizer
    (whitespace and punctuation), WordPiece with '##' continuations."""

    def __init__(self, tokenizer_json_path):
        with open(tokenizer_json_path, encoding="utf-8") as f:
            spec = json.load(f)
        model = spec["model"]
        if model.get("type") != "WordPiece":
            raise ValueError(f"{tokenizer_json_path}: model type {model.get('type')} is not WordPiece")
        self.vocab = model["vocab"]
        self.unk = model.get("unk_token", "[UNK]")
        self.prefix = model.get("continuing_subword_prefix", "##")
        self.max_chars = model.get("max_input_chars_per_word", 100)
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.unk_id = self.vocab[self.unk]

    @staticmethod
    def _normalize(text):
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            cat = unicodedata.category(ch)
            if ch in "\t\n\r" or cat == "Zs":
                out.append(" ")
            elif cat.startswith("C"):
                continue
            elif _is_chinese(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = "".join(out).lower()
        text = unicodedata.normalize("NFD", text)
        return "".join(ch for ch in text if unicodedata.category(ch) != "Mn")

    @staticmethod
    def _pre_tokenize(text):
        words = []
        for chunk in text.split():
            cur = []
            for ch in chunk:
                if _is_punctuation(ch):
                    if cur:
                        words.append("".join(cur))
                        cur = []
                    words.append(ch)
                else:
                    cur.append(ch)
            if cur:
                words.append("".join(cur))
        return words

    def _word_piece(self, word):
        if len(word) > self.max_chars:
            return [self.unk_id]
        ids = []
        start = 0
        while start < len(word):
            end = len(word)
            found = None
            while start < end:
                piece = word[start:end]
                if start > 0:
                    piece = self.prefix + piece
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk_id]
            ids.append(found)
            start = end
        return ids

    def encode(self, text, max_len=MAX_SEQ_LEN):
        """[CLS] tokens [SEP], truncated to max_len ids."""
        ids = []
        for word in self._pre_tokenize(self._normalize(text)):
            ids.extend(self._word_piece(word))
        ids = ids[: max_len - 2]
        return [self.cls_id] + ids + [self.sep_id]


# --- encoder -----------------------------------------------------------------


def _layer_norm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def _erf(x):
    # numpy has no erf: math.erf element-wise, in float64 (exact to float32)
    return _ERF(x.astype(np.float64)).astype(np.float32)


_ERF = np.frompyfunc(math.erf, 1, 1)


def _gelu(x):
    # exact (erf) GELU, as BERT's "gelu" activation
    return 0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))


class MiniLM:
    """The sentence-transformers all-MiniLM-L6-v2 pipeline: BERT encoder,
    mean pooling over real tokens, L2 normalisation."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"{model_dir}: hidden_act {cfg['hidden_act']} is not supported")
        self.hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.layers = cfg["num_hidden_layers"]
        self.eps = np.float32(cfg.get("layer_norm_eps", 1e-12))
        self.max_len = min(MAX_SEQ_LEN, cfg["max_position_embeddings"])
        self.tokenizer = WordPieceTokenizer(os.path.join(model_dir, "tokenizer.json"))

        t = load_safetensors(os.path.join(model_dir, "model.safetensors"))

        def take(name):
            return t.pop(name).astype(np.float32, copy=False)

        def linear(prefix):
            # stored as [out, in]; keep the transpose contiguous for x @ w
            return np.ascontiguousarray(take(prefix + ".weight").T), take(prefix + ".bias")

        self.word_emb = take("embeddings.word_embeddings.weight")
        self.pos_emb = take("embeddings.position_embeddings.weight")
        self.type_emb = take("embeddings.token_type_embeddings.weight")
        self.emb_ln = (take("embeddings.LayerNorm.weight"), take("embeddings.LayerNorm.bias"))
        self.blocks = []
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            self.blocks.append(
                {
                    "q": linear(p + "attention.self.query"),
                    "k": linear(p + "attention.self.key"),
                    "v": linear(p + "attention.self.value"),
                    "o": linear(p + "attention.output.dense"),
                    "ln1": (take(p + "attention.output.LayerNorm.weight"), take(p + "attention.output.LayerNorm.bias")),
                    "i": linear(p + "intermediate.dense"),
                    "out": linear(p + "output.dense"),
                    "ln2": (take(p + "output.LayerNorm.weight"), take(p + "output.LayerNorm.bias")),
                }
            )
        t.clear()

    def embed(self, texts):
        """Normalised sentence embeddings, float32 [len(texts), hidden]."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        ids = [self.tokenizer.encode(s, self.max_len) for s in texts]
        n, seq = len(ids), max(len(x) for x in ids)
        tok = np.zeros((n, seq), dtype=np.int64)
        mask = np.zeros((n, seq), dtype=np.float32)
        for r, row in enumerate(ids):
            tok[r, : len(row)] = row
            mask[r, : len(row)] = 1.0

        x = self.word_emb[tok] + self.pos_emb[:seq][None, :, :] + self.type_emb[0][None, None, :]
        x = _layer_norm(x, *self.emb_ln, self.eps)
        hd = self.hidden // self.heads
        scale = np.float32(1.0 / math.sqrt(hd))
        bias = ((1.0 - mask) * np.float32(np.finfo(np.float32).min))[:, None, None, :]

        def split(h):
            return h.reshape(n, seq, self.heads, hd).transpose(0, 2, 1, 3)

        for b in self.blocks:
            q = split(x @ b["q"][0] + b["q"][1])
            k = split(x @ b["k"][0] + b["k"][1])
            v = split(x @ b["v"][0] + b["v"][1])
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, seq, self.hidden)
            x = _layer_norm(x + (ctx @ b["o"][0] + b["o"][1]), *b["ln1"], self.eps)
            h = _gelu(x @ b["i"][0] + b["i"][1])
            x = _layer_norm(x + (h @ b["out"][0] + b["out"][1]), *b["ln2"], self.eps)

        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norm, 1e-12)).astype(np.float32)
