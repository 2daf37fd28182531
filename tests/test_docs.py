"""Every docstring's citation of docs/theory.md names a section that exists there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_theory_citation_resolves():
    headings = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", (ROOT / "docs" / "theory.md").read_text(), re.M))
    cited = set()
    for path in [*ROOT.glob("torch_landscape/**/*.py"), *ROOT.glob("examples/*.py"), *ROOT.glob("tests/*.py")]:
        for match in re.finditer(r"docs/theory\.md (§[^)\n]*)", path.read_text()):
            cited.update((path.name, number) for number in re.findall(r"§(\d+(?:\.\d+)?)", match.group(1)))
    assert len(cited) > 20
    missing = sorted((name, number) for name, number in cited if number not in headings)
    assert not missing, missing


def test_the_readme_table_of_quantities_is_the_quantity_table():
    """README's table of quantities lists every row of torch_landscape.quantities.TABLE with its tier and
    monitor, and nothing else: the docs derive from the one table."""
    from torch_landscape.quantities import TABLE

    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| (every evaluation|full evaluations) \| (\w+) \|", readme, re.M)
    tier = {"light": "every evaluation", "full": "full evaluations"}
    monitor = {"hessian": "HessianMonitor", "convexity": "ConvexityMonitor", "redundancy": "RedundancyMonitor"}
    expected = [(q.name, tier[q.tier], monitor.get(q.family, "LandscapeMonitor")) for q in TABLE]
    assert rows == expected
