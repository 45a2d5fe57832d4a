"""The documentation generated from code is current: the configuration reference is what
docs/make_config_reference.py writes from the schema, and every key has a description."""

import importlib.util

import yaml

from conftest import ROOT


def generator(name="make_config_reference"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_reference_is_current_and_describes_every_key():
    make = generator()
    schema = yaml.safe_load(make.SCHEMA.read_text())
    assert make.undescribed(schema) == []
    page = make.PAGE.read_text()
    assert page == make.reference(schema), (
        "docs/configuration.md is stale: run python docs/make_config_reference.py"
    )
    # Every key of the schema is on the page, nested ones by their dotted path.
    for key in ("corpus.synthetic.rank", "checkpoints.hub.models[].revisions[].step",
                "metrics.unreadable", "ngrams.corpora[].huggingface.shuffle_buffer"):  # fmt: skip
        assert f"| `{key}` |" in page


def test_the_outputs_page_is_the_registrys_and_no_job_reads_the_registry():
    """docs/outputs.md's table is what docs/make_outputs_reference.py writes from
    saturation/outputs.py; no entry script reaches that module (a description edited there
    re-runs nothing), and every path in it is named once."""
    from saturation.code import module_closure
    from saturation.outputs import OUTPUTS

    make = generator("make_outputs_reference")
    page = make.PAGE.read_text()
    assert page == make.page(page), (
        "docs/outputs.md is stale: run python docs/make_outputs_reference.py"
    )
    assert (
        "| `results/tables/checkpoint_metrics.parquet` | `aggregate_metrics` → `aggregation.aggregate_metrics` |"
        in page
    )
    package = ROOT / "workflow" / "scripts" / "saturation"
    for script in (ROOT / "workflow" / "scripts").glob("*.py"):
        reached = {p.name for p in module_closure(script, package)}
        assert "outputs.py" not in reached, script.name
    paths = [e.path for e in OUTPUTS.values()]
    assert len(paths) == len(set(paths))


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings."""
    import re

    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_link_of_the_docs_reaches_a_file_and_heading():
    """README.md, config/README.md and docs/*.md: each relative link (and image) names a
    file of the repository, and each #anchor a heading of its page."""
    import re

    pages = [
        ROOT / "README.md",
        ROOT / "config" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    checked = 0
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            assert file.exists(), f"{page.relative_to(ROOT)} links to {target}, which is not there"
            if anchor:
                assert anchor in anchors(file.read_text()), f"{page.relative_to(ROOT)}: #{anchor}"
            checked += 1
    assert checked >= 30


def test_the_packages_docstring_maps_every_module_to_its_stage():
    import re

    import saturation

    listed = set(re.findall(r"``(\w+)``", saturation.__doc__))
    package = ROOT / "workflow" / "scripts" / "saturation"
    modules = {p.stem for p in package.glob("*.py")} - {"__init__"}
    assert listed == modules


def rule_scripts() -> dict[str, str]:
    """{rule: its script's file name} of every named rule with a script."""
    import re

    found = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(
            r"^\s*rule (\w+):\n(.*?)(?=^\s*rule |\Z)", smk.read_text(), re.M | re.S
        ):
            script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', body)
            if script:
                found[name] = script.group(1)
    return found


def test_every_rule_runs_its_namesake_script_which_calls_its_namesake_function():
    """Rule X runs scripts/X.py, which calls saturation.<module>.X (the figure rules, one per
    figure, run scripts/figure.py, which draws with saturation.plots' function of the
    figure's name)."""
    import re

    scripts = rule_scripts()
    assert len(scripts) >= 24
    for rule, script in scripts.items():
        assert script == f"{rule}.py", (rule, script)
        source = (ROOT / "workflow" / "scripts" / script).read_text()
        assert re.search(rf"^from saturation\.\w+ import {rule}$", source, re.M), rule
        assert re.search(rf"^{rule}\(", source, re.M), rule


def test_no_public_name_is_defined_in_two_modules():
    """A function, class or constant of the package is defined once (each module's logger,
    ``log``, aside), so a name found is the one meant."""
    import ast
    import collections

    defined = collections.defaultdict(list)
    for path in sorted((ROOT / "workflow" / "scripts" / "saturation").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            else:
                targets = getattr(node, "targets", [getattr(node, "target", None)])
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            for name in names:
                if not name.startswith("_") and name != "log":
                    defined[name].append(path.stem)
    assert {n: m for n, m in defined.items() if len(m) > 1} == {}
