include: "ngrams_inputs.smk"


rule ngram_corpus:
    input:
        unpack(ngram_corpus_inputs),
    output:
        tokens=PATH["ngram_corpus"],
        meta=PATH["ngram_corpus_record"],
    log:
        "logs/ngrams/{corpus}/corpus.log",
    benchmark:
        "benchmarks/ngrams/{corpus}/corpus.tsv"
    conda:
        "../envs/corpus.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        code=code_of("ngram_corpus.py"),
        corpus=lambda wildcards: ngram_corpus_params(wildcards.corpus),
    script:
        "../scripts/ngram_corpus.py"


rule ngram_spectrum:
    input:
        unpack(ngram_tokens),
    output:
        PATH["ngram_spectra_part"],
    log:
        "logs/ngrams/{corpus}/spectrum.log",
    benchmark:
        "benchmarks/ngrams/{corpus}/spectrum.tsv"
    conda:
        "../envs/torch.yaml"  # scipy for W, torch BLAS for the block Krylov solver
    threads: NGRAMS["threads"]
    resources:
        mem_mb=NGRAMS["mem_mb"],
        runtime=NGRAMS["runtime"],
    params:
        code=code_of("ngram_spectrum.py"),
        spectrum={
            k: NGRAMS[k]
            for k in (
                "n",
                "min_context_count",
                "top_k",
                "gram_max_dim",
                "tol",
                "max_iter",
            )
        },
        tokenizer=lambda wildcards: ngram_tokenizer(wildcards.corpus),
    script:
        "../scripts/ngram_spectrum.py"


rule aggregate_ngrams:
    input:
        expand(PATH["ngram_spectra_part"], corpus=NGRAM_CORPORA),
    output:
        PATH["ngram_spectra"],
    log:
        "logs/tables/aggregate_ngrams.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=code_of("aggregate_ngrams.py"),
    script:
        "../scripts/aggregate_ngrams.py"
