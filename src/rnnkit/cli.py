"""``rnnkit <command>``: parse, build configs, call a task. No logic of its own."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from rnnkit.errors import ConfigError, RnnkitError

# flag dest -> (config section, field name)
LM_FIELDS = {
    "cell": ("model", "cell"), "hidden": ("model", "hidden_size"), "layers": ("model", "num_layers"),
    "embedding_size": ("model", "embedding_size"), "dropout": ("model", "dropout"),
    "tie_weights": ("model", "tie_weights"), "backend": ("model", "backend"),
    "data": ("data", "path"), "encoding": ("data", "encoding"), "valid_fraction": ("data", "valid_fraction"),
    "tokenizer": ("data", "tokenizer"), "lower": ("data", "lower"), "seq_len": ("data", "seq_len"),
    "min_freq": ("data", "min_freq"),
}
CLASSIFY_FIELDS = {
    **{k: ("data", k) for k in (
        "train", "valid", "test", "valid_split", "test_split", "folds", "format", "text_column", "label_column",
        "header", "encoding", "tokenizer", "lower", "pattern", "bpe_vocab_size", "min_freq", "max_vocab",
        "embeddings")},
    "cell": ("model", "cell"), "embedding_size": ("model", "embedding_size"), "hidden": ("model", "hidden_size"),
    "layers": ("model", "num_layers"), "bidirectional": ("model", "bidirectional"),
    "dropout": ("model", "dropout"), "word_dropout": ("model", "word_dropout"), "pooling": ("model", "pooling"), "mlp_hidden": ("model", "mlp_hidden"),
    "freeze_embeddings": ("model", "freeze_embeddings"), "backend": ("model", "backend"),
    "ensemble": ("model", "ensemble"),
}
TAG_FIELDS = {
    **{k: ("data", k) for k in (
        "train", "valid", "test", "format", "column", "scheme", "encoding", "lower", "min_freq", "embeddings")},
    "cell": ("model", "cell"), "embedding_size": ("model", "embedding_size"), "hidden": ("model", "hidden_size"),
    "layers": ("model", "num_layers"), "bidirectional": ("model", "bidirectional"),
    "dropout": ("model", "dropout"), "word_dropout": ("model", "word_dropout"), "crf": ("model", "crf"), "char_encoder": ("model", "char_encoder"),
    "char_embedding_size": ("model", "char_embedding_size"), "char_hidden": ("model", "char_hidden_size"),
    "backend": ("model", "backend"),
}
SEQ2SEQ_FIELDS = {
    **{k: ("data", k) for k in (
        "train", "valid", "test", "train_src", "train_tgt", "valid_src", "valid_tgt", "test_src", "test_tgt",
        "format", "split", "split_seed", "encoding", "tokenizer", "src_tokenizer", "tgt_tokenizer", "lower",
        "bpe_vocab_size", "shared_vocab", "min_freq", "max_src_len", "max_tgt_len", "beam", "length_penalty",
        "max_len_ratio", "max_len_extra")},
    "cell": ("model", "cell"), "embedding_size": ("model", "embedding_size"), "hidden": ("model", "hidden_size"),
    "layers": ("model", "num_layers"), "bidirectional": ("model", "bidirectional"),
    "dropout": ("model", "dropout"), "attention": ("model", "attention"), "score": ("model", "score"),
    "input_feeding": ("model", "input_feeding"), "bridge": ("model", "bridge"),
    "teacher_forcing": ("model", "teacher_forcing"), "label_smoothing": ("model", "label_smoothing"),
    "tie_embeddings": ("model", "tie_embeddings"), "share_embeddings": ("model", "share_embeddings"),
    "backend": ("model", "backend"),
}
TRAIN_FIELDS = {k: ("train", k) for k in (
    "max_steps", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "clip_norm", "schedule",
    "warmup_steps", "min_lr_ratio", "eval_every", "save_every", "patience", "seed", "max_time", "device",
    "precision", "deterministic")}


def _add_train_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (shared by every `train` command)")
    g.add_argument("--out", required=True, type=Path, help="run folder to create (or resume)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out exactly where its last checkpoint left it")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out instead of refusing to touch it")
    g.add_argument("--config", type=Path, help="YAML file of option defaults (keys as the flags, e.g. hidden: 512)")
    g.add_argument("--max-steps", type=int, help="optimizer steps to train for")
    g.add_argument("--epochs", type=float, help="passes over the training data (instead of --max-steps)")
    g.add_argument("--batch-size", type=int, help="sequences (stream lanes) per batch [64]")
    g.add_argument("--lr", type=float, help="peak learning rate [0.002]")
    g.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help="[adam]")
    g.add_argument("--weight-decay", type=float, help="L2 penalty (decoupled with adamw) [0]")
    g.add_argument("--clip-norm", type=float, help="clip the gradient norm to this; 0 disables [5]")
    g.add_argument("--schedule", choices=["constant", "linear", "cosine"], help="learning-rate schedule [constant]")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps [0]")
    g.add_argument("--min-lr-ratio", type=float, help="linear/cosine schedules decay to this fraction of --lr [0]")
    g.add_argument("--eval-every", type=int, help="evaluate and checkpoint every N steps [once per epoch]")
    g.add_argument("--save-every", type=int, help="save last/ every N steps [= --eval-every]")
    g.add_argument("--patience", type=int, help="early stop after N evaluations without improvement")
    g.add_argument("--seed", type=int, help="random seed [0]")
    g.add_argument("--max-time", type=float, help="stop after this many minutes (evaluating and saving first)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                   help="where to train: auto is the GPU (CUDA) when present, else the CPU [auto]")
    g.add_argument("--precision", choices=["fp32", "bf16", "fp16"],
                   help="autocast precision; fp16 (CUDA only) adds gradient scaling [fp32]")
    g.add_argument("--deterministic", action="store_true", default=None,
                   help="deterministic kernels only (torch.use_deterministic_algorithms, cuDNN's "
                        "deterministic mode) and dropout between stacked recurrent layers drawn from "
                        "torch's generator, so a resumed run can match: slower on CUDA; CPU training "
                        "is deterministic already")
    g.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks: learn, train and use them.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    h = sub.add_parser("hello", help='the lecture\'s example: a tiny tanh RNN learns "hello"',
                       description='Train a one-hot tanh RNN on "hello" and show each step.')
    h.add_argument("--hidden", type=int, default=3, help="hidden units [3]")
    h.add_argument("--steps", type=int, default=100, help="training steps [100]")
    h.add_argument("--lr", type=float, default=0.1, help="Adam learning rate [0.1]")
    h.add_argument("--seed", type=int, default=0)

    de = sub.add_parser("demo", help="a small model of every shape in the lecture, on bundled data",
                        description="Train a small model of every shape in the lecture on the bundled data "
                                    "(hello, character LM, one-to-many, many-to-one, tagging, seq2seq without "
                                    "and with attention), print a table of what each reached, and leave the "
                                    "run folders and plots in one folder. A few minutes on 2 CPU cores.")
    de.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder [runs/demo]")
    de.add_argument("--quick", action="store_true", help="a quarter of the training (a smoke run)")
    de.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    de.add_argument("--no-progress", action="store_true", help="no progress bars")

    tr = sub.add_parser("train", help="train a model into a run folder")
    tsub = tr.add_subparsers(dest="task", required=True, metavar="TASK")
    lm = tsub.add_parser("lm", help="character- or word-level language model",
                         description="Train a language model on a text file (one stream, truncated BPTT) "
                                     "or on a folder of <label>.txt files (one sequence per line, conditioned "
                                     "on the label). Without --data: the bundled Tiny Shakespeare.")
    g = lm.add_argument_group("data")
    g.add_argument("--data", help="text file, or folder of <label>.txt files [bundled Tiny Shakespeare]")
    g.add_argument("--encoding", help="text encoding of the data [utf-8]")
    g.add_argument("--valid-fraction", type=float, help="held-out fraction: the end of the text [0.1]")
    g.add_argument("--tokenizer", choices=["char", "word"], help="[char]")
    g.add_argument("--lower", action="store_const", const=True, help="lower-case the text")
    g.add_argument("--seq-len", type=int, help="truncated-BPTT window in tokens [128]")
    g.add_argument("--min-freq", type=int, help="rarer training tokens become <unk> [1]")
    g = lm.add_argument_group("model")
    g.add_argument("--cell", choices=["rnn", "lstm", "gru"], help="[lstm]")
    g.add_argument("--hidden", type=int, help="hidden units per layer [256]")
    g.add_argument("--layers", type=int, help="stacked recurrent layers [2]")
    g.add_argument("--embedding-size", type=int, help="input embedding size; 0 for one-hot input [64]")
    g.add_argument("--dropout", type=float, help="dropout [0]")
    g.add_argument("--tie-weights", action="store_const", const=True, help="share input and output embeddings")
    g.add_argument("--backend", choices=["fused", "reference"], help="fused torch kernels or rnnkit's cells [fused]")
    lm.add_argument("--sample-length", type=int, default=300, help="characters to sample at the end [300]")
    _add_train_options(lm)

    cl = tsub.add_parser("classify", help="text classification (many-to-one)",
                         description="Train a classifier: tokens -> embedding -> recurrent encoder -> pooling "
                                     "-> softmax over the classes.")
    g = cl.add_argument_group("data")
    g.add_argument("--train", help="labelled TSV/CSV/JSONL file, class files joined by commas, or a folder "
                                   "(one file or sub-folder per class)")
    g.add_argument("--valid", help="validation file (else --valid-split of --train)")
    g.add_argument("--test", help="test file, scored once with the best weights")
    g.add_argument("--valid-split", type=float, help="stratified fraction of --train for validation; 0: none, train every epoch and keep the last weights [0.1]")
    g.add_argument("--test-split", type=float, help="stratified fraction of --train held out as test [0]")
    g.add_argument("--folds", type=int, help="k-fold cross-validation on --train (e.g. 10)")
    g.add_argument("--format", choices=["auto", "tsv", "csv", "jsonl", "files", "folder"], help="[auto]")
    g.add_argument("--text-column", type=_column, help="text column: index or header name, or JSONL field [0 or text]")
    g.add_argument("--label-column", type=_column, help="label column: index or header name, or JSONL field [1 or label]")
    g.add_argument("--header", action=argparse.BooleanOptionalAction, help="the file has a header row [detect]")
    g.add_argument("--encoding", help="text encoding [utf-8]")
    g.add_argument("--tokenizer", choices=["char", "word", "bpe"], help="[word]")
    g.add_argument("--lower", action="store_const", const=True, help="lower-case the text")
    g.add_argument("--pattern", help="regex whose matches are the word tokens")
    g.add_argument("--bpe-vocab-size", type=int, help="BPE vocabulary size [8000]")
    g.add_argument("--min-freq", type=int, help="rarer training tokens become <unk> [1]")
    g.add_argument("--max-vocab", type=int, help="keep only the most frequent tokens")
    g.add_argument("--embeddings", help="pretrained vectors (GloVe / word2vec text format)")
    g = cl.add_argument_group("model")
    g.add_argument("--cell", choices=["rnn", "lstm", "gru"], help="[lstm]")
    g.add_argument("--embedding-size", type=int, help="[128]")
    g.add_argument("--hidden", type=int, help="hidden units per layer and direction [128]")
    g.add_argument("--layers", type=int, help="stacked recurrent layers [1]")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, help="read both ways [no]")
    g.add_argument("--dropout", type=float, help="[0]")
    g.add_argument("--word-dropout", type=float, help="training: replace tokens by <unk> with this probability [0]")
    g.add_argument("--pooling", choices=["last", "mean", "max", "attention"], help="[last]")
    g.add_argument("--mlp-hidden", type=int, help="hidden units of the classifier MLP; 0 for linear [0]")
    g.add_argument("--freeze-embeddings", action="store_const", const=True, help="keep pretrained vectors fixed")
    g.add_argument("--backend", choices=["fused", "reference"], help="[fused]")
    g.add_argument("--ensemble", type=int, metavar="K",
                   help="train K classifiers side by side from different initialisations and predict the mean "
                        "of their probabilities (K times the cost) [1]")
    _add_train_options(cl)

    tg = tsub.add_parser("tag", help="sequence tagging (part of speech, named entities)",
                         description="Train a tagger: word embeddings (+ a character encoder) -> recurrent "
                                     "encoder -> a tag per token, by softmax or a CRF.")
    g = tg.add_argument_group("data")
    g.add_argument("--train", help="CoNLL-U (.conllu) or CoNLL-2003-style training file")
    g.add_argument("--valid", help="validation file (early stopping and best weights)")
    g.add_argument("--test", help="test file, scored once with the best weights")
    g.add_argument("--format", choices=["auto", "conllu", "conll"], help="[auto: by suffix]")
    g.add_argument("--column", type=_column, help="conllu: upos or xpos [upos]; conll: tag column index [last]")
    g.add_argument("--scheme", choices=["bio", "bioes"], help="convert IOB1/BIO entity tags (conll)")
    g.add_argument("--encoding", help="[utf-8]")
    g.add_argument("--lower", action="store_const", const=True, help="lower-case words (characters keep case)")
    g.add_argument("--min-freq", type=int, help="rarer training words become <unk> [1]")
    g.add_argument("--embeddings", help="pretrained word vectors (GloVe / word2vec text format)")
    g = tg.add_argument_group("model")
    g.add_argument("--cell", choices=["rnn", "lstm", "gru"], help="[lstm]")
    g.add_argument("--embedding-size", type=int, help="word embedding size [100]")
    g.add_argument("--hidden", type=int, help="hidden units per layer and direction [128]")
    g.add_argument("--layers", type=int, help="[1]")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, help="read both ways [yes]")
    g.add_argument("--dropout", type=float, help="[0]")
    g.add_argument("--word-dropout", type=float,
                   help="training: replace words by <unk> with this probability, so spelling is learned [0]")
    g.add_argument("--crf", action=argparse.BooleanOptionalAction, help="a linear-chain CRF on top [no]")
    g.add_argument("--char-encoder", choices=["none", "lstm", "cnn"], help="character-level word encoder [none]")
    g.add_argument("--char-embedding-size", type=int, help="[25]")
    g.add_argument("--char-hidden", type=int, help="char LSTM units per direction, or CNN filters [25]")
    g.add_argument("--backend", choices=["fused", "reference"], help="[fused]")
    _add_train_options(tg)

    s2 = tsub.add_parser("seq2seq", help="encoder-decoder: translation, chat, spelling -> phonemes",
                         description="Train an encoder-decoder on parallel text (two line-aligned files or one "
                                     "TSV) or on CMUdict (--format cmudict), with or without attention.")
    g = s2.add_argument_group("data")
    g.add_argument("--train-src", help="training source file (one sentence per line)")
    g.add_argument("--train-tgt", help="training target file, line-aligned with --train-src")
    g.add_argument("--valid-src", help="validation source file (early stopping on BLEU / WER)")
    g.add_argument("--valid-tgt")
    g.add_argument("--test-src", help="test source file, decoded once with the best weights and --beam")
    g.add_argument("--test-tgt")
    g.add_argument("--train", help="instead: a TSV file (source<TAB>target), or the cmudict.dict file")
    g.add_argument("--valid", help="TSV validation file")
    g.add_argument("--test", help="TSV test file")
    g.add_argument("--format", choices=["auto", "parallel", "tsv", "cmudict"], help="[auto]")
    g.add_argument("--split", help="cmudict: train,valid,test fractions of the distinct words [0.9,0.05,0.05]")
    g.add_argument("--split-seed", type=int, help="cmudict: seed of the split [0]")
    g.add_argument("--encoding", help="[utf-8]")
    g.add_argument("--tokenizer", choices=["char", "word", "bpe"], help="both sides [word; cmudict: char -> phones]")
    g.add_argument("--src-tokenizer", choices=["char", "word", "bpe"], help="source side only")
    g.add_argument("--tgt-tokenizer", choices=["char", "word", "bpe"], help="target side only")
    g.add_argument("--lower", action="store_const", const=True, help="lower-case both sides")
    g.add_argument("--bpe-vocab-size", type=int, help="BPE merges per side (or shared) [8000]")
    g.add_argument("--shared-vocab", action="store_const", const=True, help="one vocabulary for both sides")
    g.add_argument("--min-freq", type=int, help="rarer training tokens become <unk> [1]")
    g.add_argument("--max-src-len", type=int, help="drop training pairs with longer sources (reported)")
    g.add_argument("--max-tgt-len", type=int, help="drop training pairs with longer targets (reported)")
    g = s2.add_argument_group("decoding (test set, translate, evaluate)")
    g.add_argument("--beam", type=int, help="beam size; 1 is greedy [5]")
    g.add_argument("--length-penalty", type=float, help="GNMT length penalty alpha; 0 for raw log-prob [1.0]")
    g.add_argument("--max-len-ratio", type=float, help="output limit: ratio x source length + extra [2.0]")
    g.add_argument("--max-len-extra", type=int, help="[10]")
    g = s2.add_argument_group("model")
    g.add_argument("--cell", choices=["rnn", "lstm", "gru"], help="encoder and decoder cell [lstm]")
    g.add_argument("--embedding-size", type=int, help="[256]")
    g.add_argument("--hidden", type=int, help="decoder size = encoder output size (split over directions) [512]")
    g.add_argument("--layers", type=int, help="encoder and decoder layers [1]")
    g.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, help="bidirectional encoder [yes]")
    g.add_argument("--dropout", type=float, help="[0.2]")
    g.add_argument("--attention", choices=["none", "bahdanau", "luong"], help="[luong]")
    g.add_argument("--score", choices=["dot", "general"], help="luong score [general]")
    g.add_argument("--input-feeding", action=argparse.BooleanOptionalAction,
                   help="luong: feed the last attentional vector into the next step (step loop) [no]")
    g.add_argument("--bridge", choices=["copy", "linear", "zero"], help="decoder start from encoder states [copy]")
    g.add_argument("--teacher-forcing", type=float, help="probability of feeding the gold token in training [1.0]")
    g.add_argument("--label-smoothing", type=float, help="training loss label smoothing [0]")
    g.add_argument("--tie-embeddings", action="store_const", const=True, help="output layer = target embedding")
    g.add_argument("--share-embeddings", action="store_const", const=True,
                   help="one embedding for both sides (with --shared-vocab)")
    g.add_argument("--backend", choices=["fused", "reference"], help="[fused]")
    _add_train_options(s2)

    tl = sub.add_parser("translate", help="translate text with a trained seq2seq run",
                        description="One source sentence per line in (a FILE or stdin), its translation out.")
    tl.add_argument("run", type=Path, help="run folder")
    tl.add_argument("file", nargs="?", help="input file [stdin]")
    _add_decoding_options(tl)
    tl.add_argument("--n-best", type=int, default=1, help="print the N best hypotheses with scores [1]")
    tl.add_argument("--plot-attention", type=Path, metavar="DIR", help="write one attention heatmap PNG per sentence")
    tl.add_argument("--json", action="store_true", help="one JSON object per line")
    tl.add_argument("--encoding", default="utf-8", help="input encoding [utf-8]")

    ch = sub.add_parser("chat", help="talk to a trained seq2seq run: read a line, answer, repeat",
                        description="Reads lines from stdin until end of input and answers each one.")
    ch.add_argument("run", type=Path, help="run folder")
    _add_decoding_options(ch)

    ins = sub.add_parser("inspect", help="draw hidden units and gates of a language model over a text",
                         description="Colour each character (or word) of a text by the activation of chosen "
                                     "hidden units — and, for an LSTM, the first unit's input/forget/output "
                                     "gates — and list the units most correlated with simple features.")
    ins.add_argument("run", type=Path, help="language-model run folder")
    ins.add_argument("--text", required=True, help="the text to read (or @FILE to read a file)")
    ins.add_argument("--units", help="comma-separated unit numbers [the units most correlated with a feature]")
    ins.add_argument("--layer", type=int, default=-1, help="layer to read [-1: the top]")
    ins.add_argument("--label", help="the label, for label-conditioned models")
    ins.add_argument("--out", type=Path, required=True, help="PNG file to write")
    ins.add_argument("--json", action="store_true", help="print the correlations as JSON")

    ex = sub.add_parser("export", help="export a trained run to ONNX (pip install 'rnnkit[export]')",
                        description="Write the run's model as ONNX: one graph for a language model, classifier "
                                    "or tagger; an encoder and a one-step decoder for seq2seq. A JSON sidecar "
                                    "names the inputs, outputs and special ids a plain onnxruntime loop needs.")
    ex.add_argument("run", type=Path, help="run folder")
    ex.add_argument("--format", choices=["onnx"], default="onnx", help="[onnx]")
    ex.add_argument("--out", type=Path, required=True, help="output file (model.onnx) or folder")
    ex.add_argument("--opset", type=int, help="ONNX opset [17]")

    sv = sub.add_parser("serve", help="HTTP JSON API and a browser playground for trained runs",
                        description="Serve run folders over HTTP: POST /api/generate, /api/classify, /api/tag, "
                                    "/api/translate (OpenAPI schema at /openapi.json) and a playground page at /.")
    sv.add_argument("runs", nargs="+", type=Path, help="run folders to load")
    sv.add_argument("--host", default="127.0.0.1", help="[127.0.0.1]")
    sv.add_argument("--port", type=int, default=8000, help="[8000]")
    sv.add_argument("--max-chars", type=int, default=2000, help="longest accepted text [2000]")
    sv.add_argument("--max-batch", type=int, default=32, help="most texts per request [32]")
    sv.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")

    pr = sub.add_parser("predict", help="label texts (classifier) or tag sentences (tagger)",
                        description="Classifier: one text per line in, label and class probabilities out. "
                                    "Tagger: one whitespace-tokenised sentence per line in, token<TAB>tag per "
                                    "line out, a blank line between sentences (or --format conllu FILE: the "
                                    "file back with the run's column filled).")
    pr.add_argument("run", type=Path, help="run folder")
    pr.add_argument("file", nargs="?", help="input file [stdin]")
    pr.add_argument("--json", action="store_true", help="classifier: one JSON object per line")
    pr.add_argument("--format", choices=["text", "conllu"], default="text", help="tagger input format [text]")
    pr.add_argument("--encoding", default="utf-8", help="input encoding [utf-8]")

    ge = sub.add_parser("generate", help="sample text from a trained language model",
                        description="Sample continuations of a prime text from a run folder.")
    ge.add_argument("run", type=Path, help="run folder")
    ge.add_argument("--prime", default=None, help="text to start from [a newline]")
    ge.add_argument("--length", type=int, default=300, help="tokens to generate [300]")
    ge.add_argument("--temperature", type=float, default=1.0, help="> 0; lower is more conservative [1.0]")
    ge.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    ge.add_argument("--top-p", type=float, help="nucleus sampling: smallest set with this probability, in (0, 1]")
    ge.add_argument("--seed", type=int, help="random seed for reproducible samples")
    ge.add_argument("--num-samples", type=int, default=1, help="samples, drawn in one batch [1]")
    ge.add_argument("--label", help="class label to generate for (conditioned models)")

    ev = sub.add_parser("evaluate", help="score a trained model on a data file",
                        description="Language models: nats per token, perplexity and bits per token on a whole "
                                    "text file. Classifiers: accuracy, macro-F1 and per-class scores on a "
                                    "labelled file.")
    ev.add_argument("run", type=Path, help="run folder")
    ev.add_argument("--data", help="data file [language models: bundled Tiny Shakespeare]")
    ev.add_argument("--encoding", help="text encoding [the run's]")
    ev.add_argument("--src", help="seq2seq: source file, line-aligned with --tgt")
    ev.add_argument("--tgt", help="seq2seq: reference file")
    ev.add_argument("--beam", type=int, help="seq2seq: beam size [the run's]")
    ev.add_argument("--json", action="store_true", help="print one JSON object of metrics on stdout")
    return p


def _add_decoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, help="beam size; 1 is greedy [the run's, 5]")
    p.add_argument("--length-penalty", type=float, help="GNMT length penalty alpha [the run's, 1.0]")
    p.add_argument("--sample", action="store_true", help="sample instead of searching")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature [1.0]")
    p.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold in (0, 1]")
    p.add_argument("--seed", type=int, help="random seed for sampling")


def _column(value: str):
    """A column given by 0-based index or by name."""
    return int(value) if value.isdigit() else value


def _load_yaml(path: Optional[Path]) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def _sections(args: argparse.Namespace, fields: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Options given on the command line or in --config, grouped by config section."""
    yaml_opts = _load_yaml(args.config)
    unknown = sorted(set(yaml_opts) - set(fields))
    if unknown:
        raise ConfigError(f"{args.config}: unknown options {unknown}")
    out: dict[str, dict[str, Any]] = {"model": {}, "data": {}, "train": {}}
    for dest, (section, name) in fields.items():
        value = getattr(args, dest, None)
        if value is None:
            value = yaml_opts.get(dest)
        if value is not None:
            out[section][name] = value
    return out


def _given(args: argparse.Namespace, fields: dict[str, tuple[str, str]], default_epochs: float):
    """Options from the command line and --config; on --resume, the rest from the saved run."""
    from rnnkit import checkpoint as ckpt

    given = _sections(args, {**fields, **TRAIN_FIELDS})
    if given["model"].get("embedding_size") == 0:
        given["model"]["embedding_size"] = None
    if given["train"].get("clip_norm") == 0:
        given["train"]["clip_norm"] = None
    saved = ckpt.load_json(args.out / ckpt.CONFIG) if args.resume and (args.out / ckpt.CONFIG).is_file() else {}
    if saved:  # options not given now come from the run being resumed
        derived = {"vocab_size", "num_labels", "num_classes", "pad_id", "unk_id", "num_tags", "char_vocab_size",
                   "char_pad_id", "src_vocab_size", "tgt_vocab_size", "src_pad_id", "tgt_pad_id", "tgt_bos_id",
                   "tgt_eos_id"}
        given = {s: {**{k: v for k, v in saved[s].items() if k not in derived}, **given[s]} for s in given}
    elif not given["train"].get("max_steps") and not given["train"].get("epochs"):
        given["train"]["epochs"] = default_epochs
    return given


# train TASK -> (task module, its data config class, its train function, its flag table, default epochs)
TRAIN_TASKS = {
    "lm": ("rnnkit.tasks.lm", "LMDataConfig", "train_lm", LM_FIELDS, 1.0),
    "classify": ("rnnkit.tasks.classify", "ClassifyDataConfig", "train_classify", CLASSIFY_FIELDS, 10.0),
    "tag": ("rnnkit.tasks.tag", "TagDataConfig", "train_tag", TAG_FIELDS, 10.0),
    "seq2seq": ("rnnkit.tasks.seq2seq", "Seq2SeqDataConfig", "train_seq2seq", SEQ2SEQ_FIELDS, 10.0),
}


def _train(args: argparse.Namespace) -> int:
    import importlib

    from rnnkit import distributed
    from rnnkit.tasks.runs import resolve
    from rnnkit.trainer import TrainConfig

    module_name, data_cls, fn_name, fields, default_epochs = TRAIN_TASKS[args.task]
    module = importlib.import_module(module_name)
    given = _given(args, fields, default_epochs)
    extra = {"sample_length": args.sample_length} if args.task == "lm" else {}
    train_cfg = resolve(TrainConfig, given["train"])
    distributed.init_from_env(train_cfg.device)  # a no-op unless launched by torchrun
    try:
        getattr(module, fn_name)(args.out, given["model"], resolve(getattr(module, data_cls), given["data"]),
                                 train_cfg, resume=args.resume, overwrite=args.overwrite,
                                 progress=not args.no_progress and distributed.is_main(), **extra)
    finally:
        distributed.cleanup()
    return 0


def _decode_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(beam=args.beam, length_penalty=args.length_penalty, sample=args.sample,
                temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)


def _translate(args: argparse.Namespace) -> int:
    from rnnkit.data import read_text
    from rnnkit.tasks.seq2seq import Translator, plot_attention

    t = Translator(args.run)
    text = read_text(args.file, args.encoding) if args.file else sys.stdin.read()
    lines = text.splitlines()
    results = t.translate(lines, n_best=args.n_best, **_decode_kwargs(args))
    for line, hyps in zip(lines, results):
        if args.json:
            print(json.dumps({"source": line, "translation": hyps[0].text,
                              "n_best": [{"text": h.text, "score": round(h.score, 4)} for h in hyps]},
                             ensure_ascii=False))
        elif args.n_best > 1:
            print("\n".join(f"{h.score:.4f}\t{h.text}" for h in hyps) + "\n")
        else:
            print(hyps[0].text)
    if args.plot_attention:
        paths = plot_attention(t, lines, [h[0] for h in results], args.plot_attention)
        print(f"{len(paths)} attention heatmaps in {args.plot_attention}", file=sys.stderr)
    return 0


def _chat(args: argparse.Namespace) -> int:
    from rnnkit.tasks.seq2seq import Translator

    t = Translator(args.run)
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        print(t.translate([line], **_decode_kwargs(args))[0][0].text, flush=True)


def _task_of(run: Path) -> str:
    from rnnkit import checkpoint as ckpt
    from rnnkit.errors import CheckpointError

    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder")
    return ckpt.load_json(run / ckpt.CONFIG).get("task", "lm")


def _predict(args: argparse.Namespace) -> int:
    from rnnkit.data import read_text

    task = _task_of(args.run)
    if task == "tag":
        from rnnkit.tasks.tag import predict as tag_predict

        text = "" if args.format == "conllu" else (
            read_text(args.file, args.encoding) if args.file else sys.stdin.read())
        sys.stdout.write(tag_predict(args.run, text, args.format, args.encoding, args.file))
        return 0
    if task != "classify":
        raise ConfigError(f"{args.run} holds a {task!r} model; predict works on classifiers and taggers "
                          "(use `rnnkit generate` for language models)")
    from rnnkit.tasks.classify import predict

    text = read_text(args.file, args.encoding) if args.file else sys.stdin.read()
    lines = text.splitlines()
    for row in predict(args.run, lines):
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            probs = " ".join(f"{k}={v:.3f}" for k, v in row["probs"].items())
            print(f"{row['label']}\t{probs}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from rnnkit.tasks.lm import generate

    texts = generate(args.run, prime=args.prime if args.prime is not None else ("" if args.label else "\n"),
                     length=args.length, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                     seed=args.seed, num_samples=args.num_samples, label=args.label)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1} ---")
        print(text)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    task = _task_of(args.run)
    if task == "seq2seq":
        from rnnkit.tasks.seq2seq import evaluate as s2s_evaluate

        metrics = s2s_evaluate(args.run, args.src, args.tgt, args.data, args.beam, args.encoding)
    elif task in ("classify", "tag"):
        if not args.data:
            raise ConfigError("give --data: a labelled file to evaluate on")
        if task == "classify":
            from rnnkit.tasks.classify import evaluate
        else:
            from rnnkit.tasks.tag import evaluate
        metrics = evaluate(args.run, args.data, args.encoding)
    else:
        from rnnkit.tasks.lm import evaluate
        metrics = evaluate(args.run, args.data, args.encoding)
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
    else:
        for k, v in metrics.items():
            print(f"{k:18} {v:.4f}" if isinstance(v, float) else f"{k:18} {v}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from rnnkit.data import read_text
    from rnnkit.tasks.inspect import inspect_run

    text = read_text(args.text[1:]) if args.text.startswith("@") else args.text.replace("\\n", "\n")
    try:
        units = [int(u) for u in args.units.split(",")] if args.units else None
    except ValueError:
        raise ConfigError(f"--units must be comma-separated integers, got {args.units!r}") from None
    result = inspect_run(args.run, text, args.out, units=units, layer=args.layer, label=args.label)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"layer {result['layer']}, {result['tokens']} tokens; drew units {result['units']} into {args.out}")
    print("units most correlated with each feature (Pearson r):")
    for name, pairs in result["correlations"].items():
        print(f"  {name:18} " + "  ".join(f"unit {u}: {r:+.2f}" for u, r in pairs))
    return 0


def _export(args: argparse.Namespace) -> int:
    from rnnkit.export import export_onnx

    for path in export_onnx(args.run, args.out, opset=args.opset):
        print(path)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from rnnkit.serve import serve

    serve(args.runs, host=args.host, port=args.port, max_chars=args.max_chars, max_batch=args.max_batch)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rnnkit.tasks.demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def _hello(args: argparse.Namespace) -> int:
    from rnnkit.tasks.hello import hello

    text = hello(hidden_size=args.hidden, steps=args.steps, lr=args.lr, seed=args.seed)
    return 0 if text == "hello" else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch
        torch.set_num_threads(args.threads)
    handlers = {"hello": _hello, "generate": _generate, "evaluate": _evaluate, "predict": _predict,
                "translate": _translate, "chat": _chat, "demo": _demo,
                "inspect": _inspect, "export": _export, "serve": _serve}
    try:
        if args.command == "train":
            return _train(args)
        return handlers[args.command](args)
    except RnnkitError as e:
        print(f"rnnkit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
