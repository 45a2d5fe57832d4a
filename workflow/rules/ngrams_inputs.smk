# The ngrams stage's Python (each n-gram corpus's tokens, tokenizer and sampling), included by rules/ngrams.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
def ngram_tokens(wildcards):
    """The tokens of an n-gram corpus: the workflow's training split, or its own sample."""
    if NGRAM_ENTRIES[wildcards.corpus]["source"] == "workflow":
        return {
            "tokens": PATH["corpus"].format(split="train"),
            "meta": PATH["corpus_record"].format(split="train"),
        }
    return {
        "tokens": PATH["ngram_corpus"].format(corpus=wildcards.corpus),
        "meta": PATH["ngram_corpus_record"].format(corpus=wildcards.corpus),
    }


def ngram_tokenizer(name):
    """The tokenizer an n-gram corpus is counted in, as the tables and Fig 7 name it: a hub
    repo id, or the models whose tokenizer a folder is (never its path)."""
    entry = NGRAM_ENTRIES[name]
    tokenizer = (
        CORPUS["tokenizer"] if entry["source"] == "workflow" else entry["tokenizer"]
    )
    if tokenizer is None:
        return "synthetic"
    if isinstance(tokenizer, TokenizerFolder):
        key = tokenizer_key(tokenizer)
        users = [m for m, t in MODEL_TOKENIZER.items() if t and tokenizer_key(t) == key]
        return (
            f"tokenizer of {', '.join(users)}" if users else f"{Path(tokenizer).name}"
        )
    return tokenizer


def ngram_corpus_params(name):
    entry = NGRAM_ENTRIES[name]
    params = {
        "source": entry["source"],
        "n_tokens": entry["n_tokens"],
        "seed": config["seed"],
        "tokenizer": entry["tokenizer"],
        "document_separator": CORPUS["document_separator"],
    }
    params[entry["source"]] = entry[entry["source"]]
    return params


def ngram_corpus_inputs(wildcards):
    entry = NGRAM_ENTRIES[wildcards.corpus]
    if entry["source"] == "local":
        return {"documents": entry["local"]["paths"]}
    return {}
