include: "corpus_inputs.smk"


if SYNTHETIC:  # the demo's language, generated

    rule synthetic_language:
        output:
            language=PATH["synthetic_language"],
            meta=PATH["synthetic_language_record"],
        log:
            "logs/corpus/synthetic_language.log",
        conda:
            "../envs/corpus.yaml"
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            code=code_of("synthetic_language.py"),
            synthetic={
                k: CORPUS["synthetic"][k]
                for k in ("vocab_size", "rank", "logit_scale", "zipf_exponent")
            },
            seed=config["seed"],
        script:
            "../scripts/synthetic_language.py"


rule sample_corpus:
    input:
        unpack(corpus_inputs),
    output:
        tokens=PATH["corpus"],
        meta=PATH["corpus_record"],
    log:
        "logs/corpus/sample_{split}.log",
    benchmark:
        "benchmarks/corpus/sample_{split}.tsv"
    conda:
        "../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_of("sample_corpus.py"),
        corpus=lambda wildcards: corpus_params(wildcards.split),
    script:
        "../scripts/sample_corpus.py"


rule tokenize_corpus:
    input:
        reference=PATH["corpus"],
    output:
        tokens=PATH["tokenized_corpus"],
        meta=PATH["tokenized_corpus_record"],
    log:
        "logs/corpus/tokenize_{split}_{tokenizer}.log",
    conda:
        "../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=code_of("tokenize_corpus.py"),
        tokenizer=lambda wildcards: OTHER_TOKENIZERS[wildcards.tokenizer],
        document_separator=CORPUS["document_separator"],
    script:
        "../scripts/tokenize_corpus.py"


rule count_tokens:
    # Each token id's count in a model's training sample (metrics.parts frequency).
    input:
        PATH["corpus"].format(split="{sample}"),
    output:
        PATH["token_counts"],
    log:
        "logs/corpus/token_counts/{sample}.log",
    wildcard_constraints:
        sample=r"train(/[^/]+)?",
    conda:
        "../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_of("count_tokens.py"),
    script:
        "../scripts/count_tokens.py"


rule eval_corpus:
    # A named evaluation corpus's documents: a harness task's, through its own loading.
    output:
        text=PATH["eval_corpus"],
        meta=PATH["eval_corpus_record"],
    log:
        "logs/eval_corpora/{eval_corpus}.log",
    conda:
        "../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_of("eval_corpus.py"),
        entry=lambda wildcards: EVAL_CORPORA[wildcards.eval_corpus],
        include_path=DOWNSTREAM["include_path"],
        retry=HUB_RETRY,
    script:
        "../scripts/eval_corpus.py"


rule tokenize_eval_corpus:
    input:
        text=PATH["eval_corpus"],
    output:
        tokens=PATH["eval_corpus_tokens"],
        meta=PATH["eval_corpus_tokens_record"],
    log:
        "logs/eval_corpora/{eval_corpus}_{eval_tokenizer}.log",
    conda:
        "../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=code_of("tokenize_eval_corpus.py"),
        tokenizer=lambda wildcards: MODEL_TOKENIZER_KEYS[wildcards.eval_tokenizer],
    script:
        "../scripts/tokenize_eval_corpus.py"
