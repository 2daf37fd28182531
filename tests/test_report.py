"""The text report as TensorBoard renders it (its own Markdown-to-HTML function): the verdict first, lists and
a table, no preformatted block, no code, no Python tuple, short source lines; its numbers are the dense truth's
and the snapshot's; the console line says the same in the same words."""

import html
import math
import re
import textwrap

import pytest
import torch
from tensorboard.plugin_util import markdown_to_safe_html
from torch import nn

from helpers import dense_truth, regression_data, shallow
from torch_landscape.probe import LandscapeProbe
from torch_landscape.redundancy import mlp_redundancy
from torch_landscape.snapshot import LandscapeSnapshot
from torch_landscape.writers.report import WIDTH, console_line, snapshot_report, spectrum_words

LOSS = nn.MSELoss()

#: The report prints eigenvalues to 4 significant digits: a printed value is within half a unit of its 4th
#: digit, 5e-4 relative, of the snapshot's; the snapshot's is within its printed bound (~1e-15) of the truth.
PRINTED = 5e-4


@pytest.fixture(scope="module")
def planted():
    """A width-5 tanh network away from any critical point, with neuron 3 a duplicate of neuron 0 and neuron
    2's output weight 0 (two verified merges, width 5 → 3), a reference and a learning rate past 2/λ_max."""
    data = regression_data(64, 2)
    model = shallow(2, 5, nn.Tanh(), seed=2)
    with torch.no_grad():
        model[0].weight[3] = model[0].weight[0]
        model[0].bias[3] = model[0].bias[0]
        model[2].weight[0, 2] = 0.0
    probe = LandscapeProbe(model, LOSS, data, reference=shallow(2, 2, nn.Tanh(), seed=5))
    return model, data, probe.snapshot(3, learning_rate=0.9)


@pytest.fixture(scope="module")
def least_squares():
    """Linear least squares at its exact solution: a nondegenerate minimum with H = 2 XᵀX/n in closed form."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    y = y + 0.1 * torch.randn(64, 1, generator=generator, dtype=torch.float64)
    design = torch.cat([x, torch.ones(64, 1, dtype=x.dtype)], 1)
    solution = torch.linalg.lstsq(design, y).solution[:, 0]
    model = nn.Linear(3, 1).double()
    with torch.no_grad():
        model.weight.copy_(solution[:3][None])
        model.bias.copy_(solution[3:])
    eigenvalues = torch.linalg.eigvalsh(2 * design.T @ design / 64)
    return LandscapeProbe(model, LOSS, (x, y)).snapshot(0), eigenvalues


def rendered(markdown):
    """The report as TensorBoard's Text tab shows it: its HTML, and its text with whitespace collapsed."""
    page = markdown_to_safe_html(markdown)
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    return page, " ".join(text.split())


def assert_wraps(markdown):
    """Lists render as lists, the table as a table; nothing preformatted; source lines short; no tuple."""
    page, text = rendered(markdown)
    assert "<pre" not in page and "<code" not in page
    # TensorBoard keeps a paragraph's line breaks (white-space: break-spaces) but joins a tight list item's.
    assert not any("\n" in paragraph for paragraph in re.findall(r"<p>(.*?)</p>", page, re.S))
    assert "<li>\n<p>" not in page and "<li><p>" not in page
    items = [line for line in markdown.splitlines() if line.startswith("- ")]
    assert page.count("<li>") == len(items) and (not items or "<ul>" in page)
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert page.count("<tr>") == (len(rows) - 1 if rows else 0)  # the separator row is no row
    assert all(len(line) <= 160 for line in markdown.splitlines() if not line.startswith("|"))
    assert not re.search(r"\(\d+,\)|\(\d+, \d+[,)]|\[\d+, \d+\]", text), "a Python tuple or list leaked"
    assert not re.search(r"\bnan\b", text, re.IGNORECASE) or "probe loss is nan" in text
    return page, text


def test_the_report_is_markdown_that_wraps_verdict_first(planted):
    _, _, snapshot = planted
    markdown = snapshot_report(snapshot)
    page, text = assert_wraps(markdown)
    assert markdown.startswith(f"**step {snapshot.step}** (full evaluation): ")
    verdict, alert = markdown.split("\n\n")[:2]  # where it stands and the loss; the stability threshold crossed
    assert "not at a critical point: the Newton step to one is" in verdict and verdict.endswith(
        f"; probe loss {snapshot.loss:.4g}, |grad L| {snapshot.grad_norm:.2g}."
    )
    ratio = snapshot.spectrum.lambda_max * 0.9 / 2
    assert alert.startswith(f"- **stability ratio {ratio:.3g} > 1 at step 3: the optimizer is unstable")
    for heading in ("Hessian", "Critical point", "Convexity", "Redundancy"):
        assert f"<strong>{heading}</strong>" in page
    assert page.count("<ul>") >= 4 and "<table>" in page


def test_the_numbers_in_the_report_are_the_dense_truths(planted):
    model, data, snapshot = planted
    truth = torch.linalg.eigvalsh(dense_truth(model, LOSS, data))
    _, text = rendered(snapshot_report(snapshot))
    for name, value in (("λ_max", truth[-1]), ("λ_min", truth[0])):
        printed, bound = map(float, re.search(rf"{name} (\S+) ± (\S+)", text).groups())
        assert abs(printed - float(value)) <= PRINTED * abs(float(value)) + bound
    # Certainly negative: below −(error bound + 1e-8·λ_max) in the library; the truth's negative eigenvalues
    # here are all below −1e-3, and its others above −1e-12, so the count is unambiguous.
    negative = int((truth < -1e-3).sum())
    assert negative == int((truth < -1e-12).sum()) >= 1
    assert f"{negative} certainly negative eigenvalues" in text
    trace = float(re.search(r"trace = (\S+)", text).group(1))
    assert trace == pytest.approx(float(truth.sum()), rel=1e-9)  # printed to 10 digits
    assert f"2/lr {2 / 0.9:.4g}" in text


def test_the_redundancy_is_a_table_in_words(planted):
    _, _, snapshot = planted
    markdown = snapshot_report(snapshot)
    assert "**Redundancy** (tanh): width 5 → effective width 3" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| neuron") and "| rule |" not in line]
    assert any(row.startswith("| neurons 0, 3 | duplicate | 0 | yes |") for row in rows)
    assert any(row.startswith("| neuron 2 | zero output weight | 0 | yes |") for row in rows)
    claims = {tuple(sorted(finding.neurons)) for finding in snapshot.redundancy.claims}
    assert claims == {(0, 3), (2,)} and len(rows) == len(snapshot.redundancy.findings)
    for finding in snapshot.redundancy.findings:  # each row's change is the finding's own
        row = next(row for row in rows if f"| {finding.rule} |" in row)
        assert row.endswith(f"| {finding.max_output_change:.2g} |")
    assert "the rules are complete (Sussmann)" in rendered(markdown)[1]


def test_console_and_report_say_the_same_words_and_numbers(planted, least_squares):
    for snapshot in (planted[2], least_squares[0]):
        line = console_line(snapshot)
        _, text = rendered(snapshot_report(snapshot))
        assert line.startswith(f"step {snapshot.step}: probe loss ")
        parts = line.removeprefix(f"step {snapshot.step}: ").split("; ")
        pieces = [piece for part in parts for piece in part.split(", ")]
        assert len(pieces) >= 5
        for piece in pieces:
            assert piece in text, piece
        spectrum, solver = spectrum_words(snapshot).removesuffix(")").split(" (")  # the solver: the Hessian's heading
        assert spectrum == parts[1] and f"Hessian ({solver})" in text


def test_a_nondegenerate_minimum_reads_index_and_nullity_and_its_eigenvalues(least_squares):
    snapshot, eigenvalues = least_squares
    markdown = snapshot_report(snapshot)
    _, text = assert_wraps(markdown)
    assert snapshot.critical.kind == "nondegenerate_min"
    assert markdown.startswith("**step 0** (full evaluation): at a nondegenerate minimum: strongly convex nearby;")
    assert "**Critical point**: **nondegenerate_min**" in markdown and "Morse index 0, nullity 0" in text
    printed = float(re.search(r"λ_min (\S+) ±", text).group(1))
    assert printed == pytest.approx(float(eigenvalues[0]), rel=PRINTED)
    # At the solution L equals its own running minimum: the PL ratio is 0/0, said in words, never "nan".
    assert "no PL ratio: L − L* is at rounding level" in text


def test_a_deep_mlp_reads_its_layers_and_global_neuron_numbers():
    x, y = regression_data(48, 2)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    with torch.no_grad():
        model[4].weight[0, 1] = 0.0  # neuron 1 of the second hidden layer: neuron 5 in the global numbering
    report = mlp_redundancy(model, [(x, y)])
    snapshot = LandscapeSnapshot(step=2, num_parameters=31, loss=0.5, grad_norm=0.1, seconds=0.0, redundancy=report)
    markdown = snapshot_report(snapshot)
    assert_wraps(markdown)
    assert "width 7 → effective width 6 (layers 4 + 3 → 4 + 2)" in markdown
    assert any(line.startswith("| neuron 5 | zero output weight |") for line in markdown.splitlines())
    assert console_line(snapshot).endswith("; width 7 → effective width 6 (layers 4 + 3 → 4 + 2)")


def test_a_non_finite_loss_is_said_first_and_nothing_is_claimed_of_it():
    snapshot = LandscapeSnapshot(step=49, num_parameters=10, loss=math.nan, grad_norm=math.nan, seconds=0.0)
    markdown = snapshot_report(snapshot)
    assert_wraps(markdown)
    assert markdown.startswith("**step 49** (full evaluation): the probe loss is nan at step 49: training diverged;")
    assert "infimum" not in markdown and "critical" not in markdown


def test_failures_and_long_sentences_stay_list_items():
    """A sentence whose wrapped lines could start with "- " or "1." stays one item."""
    error = "spectrum: " + " ".join(f"{'w' * (i % 5 + 1)} - {i}. y" for i in range(40))
    plain = textwrap.wrap(error, WIDTH, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False)
    assert any(re.match(r"\s+(-|\d+\.) ", line) for line in plain[1:])  # wrapped naively, a line opens a list
    snapshot = LandscapeSnapshot(step=1, num_parameters=3, loss=1.0, grad_norm=2.0, seconds=0.0, errors=(error,))
    markdown = snapshot_report(snapshot)
    page, text = assert_wraps(markdown)
    assert page.count("<li>") == 1 and error in text
