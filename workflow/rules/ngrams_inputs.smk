# The ngrams stage's Python (each n-gram corpus's tokens, tokenizer and sampling), included by rules/ngrams.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
def ngram_tokens(wildcards):
    """The tokens of an n-gram corpus: the workflow's training split, or its own sample."""
    if NGRAM_ENTRIES[wildcards.corpus]["source"] == "workflow":
        return {
            "tokens": "results/corpus/train.parquet",
            "meta": "results/corpus/train.json",
        }
    return {
        "tokens": f"results/ngrams/{wildcards.corpus}/tokens.parquet",
        "meta": f"results/ngrams/{wildcards.corpus}/tokens.json",
    }


def ngram_tokenizer(name):
    entry = NGRAM_ENTRIES[name]
    if entry["source"] == "workflow":
        return CORPUS["tokenizer"] or "synthetic"
    return entry["tokenizer"]


def ngram_corpus_params(name):
    entry = NGRAM_ENTRIES[name]
    params = {
        "source": entry["source"],
        "split": "train",
        "n_tokens": entry["n_tokens"],
        "seed": config["seed"],
        "tokenizer": entry["tokenizer"],
        "eval_fraction": 0.0,  # every document counts
        "max_document_tokens": None,
        "document_separator": CORPUS["document_separator"],
        "keep_text": False,  # no other tokenizer reads an n-gram corpus
    }
    params[entry["source"]] = entry[entry["source"]]
    return params


def ngram_corpus_inputs(wildcards):
    entry = NGRAM_ENTRIES[wildcards.corpus]
    if entry["source"] == "local":
        return {"documents": entry["local"]["paths"]}
    return {}
