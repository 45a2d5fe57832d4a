# The acquisition stage's Python (a hub model's manifest settings, and a mini-suite model's setup), included by rules/acquisition.smk
# above its rules (Snakemake's linter keeps functions out of files with rules).
def manifest_params(wildcards):
    return {
        "model": wildcards.model,
        "repo_id": REPO_ID[wildcards.model],
        "revisions": HUB_MODELS[wildcards.model]["revisions"],
        "trusted_steps": CHECKPOINT_CONFIG["trusted_steps"].get(wildcards.model, []),
        "reference": HUB["reference_revision"],
        "retry": HUB_RETRY,
    }


def minisuite_model(wildcards):
    return {
        "name": wildcards.model,
        "hidden_size": HIDDEN_SIZE[wildcards.model],
        "num_layers": MINISUITE["num_layers"],
        "head_dim": MINISUITE["head_dim"],
        "sequence_length": MINISUITE["sequence_length"],
    }


def minisuite_vocab():
    """The vocabulary the mini-suite is trained on: the synthetic language's, or the
    tokenizer's for a text corpus."""
    if CORPUS["source"] == "synthetic":
        return {"vocab_size": CORPUS["synthetic"]["vocab_size"], "tokenizer": None}
    return {"vocab_size": None, "tokenizer": CORPUS["tokenizer"]}
