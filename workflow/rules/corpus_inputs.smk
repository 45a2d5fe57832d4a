# The corpus stage's Python (what sampling a split reads, by source), included by rules/corpus.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
def corpus_params(split):
    """What sampling one split reads: editing another split's size or an unused source
    section does not re-run it."""
    params = {
        "source": CORPUS["source"],
        "split": split,
        "n_tokens": CORPUS[f"{split}_tokens"],
        "seed": config["seed"],
    }
    if CORPUS["source"] == "synthetic":
        params["document_length"] = CORPUS["synthetic"]["document_length"]
    else:
        params["tokenizer"] = CORPUS["tokenizer"]
        params["eval_fraction"] = CORPUS["eval_fraction"]
        params["max_document_tokens"] = CORPUS["max_document_tokens"]
        params["document_separator"] = CORPUS["document_separator"]
        params[CORPUS["source"]] = CORPUS[CORPUS["source"]]
    return params


def corpus_inputs(wildcards):
    if CORPUS["source"] == "synthetic":
        return {"language": PATH["synthetic_language"]}
    if CORPUS["source"] == "local":
        return {
            "documents": CORPUS["local"]["paths"]
            + (CORPUS["local"]["eval_files"] or [])
        }
    return {}
