"""The papers' numbers: every row joins a table, method and metric the runner produces."""
from cam_lib import metrics, papers, reproduce


def test_every_reported_number_has_a_counterpart_in_the_runner():
    reported = papers.numbers()
    tables = {t.name: t for t in reproduce.tables(reproduce.settings_for(False, None, 7))}
    for row in reported.itertuples():
        table = tables[row.table]
        combined = metrics.METRICS[row.metric].combines  # ADCC: summarise adds it from AD, Coh, Com
        assert set(combined or (row.metric,)) <= set(table.metrics), row
        assert row.method in table.methods and row.utility in table.utilities, row
    assert len(reported) == 9 + 6 + 18 + 12 + 2 + 6 + 24
    assert reported.loc[(reported.table == "table2") & (reported.method == "lift"), "value"].item() == 0.980
