"""The simulated SSLs: determinism, structure, the paper's SOC statistics, and the problem LocalSOC
solves (a global-library model is biased on each local site, the site's own samples are not).

Preprocessing (log10(1/R) + SNV) and the calibration split (random, seeded) are done inline here
on purpose: this file tests the simulator, not the transformers or Kennard-Stone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold, cross_val_predict

from localsoc.data.schema import META_COLUMNS, Grid, band_columns, spectra_of
from localsoc.data.simulate import (
    COMPONENTS,
    COUNTRY_SIZES_PAPER,
    GLOBAL_SIZE_PAPER,
    PAPER_SOC_STATISTICS,
    SocStatistics,
    component_spectra,
    country_sizes_for,
    default_sites,
    simulate_ssl,
    summarise_soc,
)

GLOBAL_SIZE = 5000
SEED = 42
SITES = {"china_site": ("CN", 135), "sweden_site": ("SE", 108), "usa_site": ("US", 216)}
N_CALIBRATION = 30
GLOBAL_COMPONENTS = 15
COUNTRY_COMPONENTS = 10


def _absorbance_snv(reflectance: np.ndarray) -> np.ndarray:
    absorbance = np.log10(1.0 / reflectance)
    centred = absorbance - absorbance.mean(axis=1, keepdims=True)
    return centred / absorbance.std(axis=1, keepdims=True)


def _rmse_me(predicted: np.ndarray, observed: np.ndarray) -> tuple[float, float]:
    error = np.ravel(predicted) - observed
    return float(np.sqrt(np.mean(error**2))), float(np.mean(error))


def _mask(series: pd.Series, value: str) -> np.ndarray:
    return (series == value).fillna(False).to_numpy(dtype=bool)


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    return simulate_ssl(global_size=GLOBAL_SIZE, seed=SEED)


@pytest.fixture(scope="module")
def study(tables) -> dict[str, dict[str, float]]:
    """Per site: RMSE and mean error (ME) of a global, a country and a local PLSR on the test set.

    Local: PLSR on 30 random calibration samples (components by 5-fold CV, 1-8). Global: PLSR on
    the whole library. Country: PLSR on the site's country SSL. Country in range: the country SSL
    restricted to the SOC range of the site's calibration samples (a library subset that
    resembles the site, which a user can form from the calibration analyses).
    """
    library, sites = tables
    x_library = _absorbance_snv(spectra_of(library))
    y_library = library["soc"].to_numpy()
    global_model = PLSRegression(GLOBAL_COMPONENTS, scale=False).fit(x_library, y_library)
    figures = {}
    for site_id, (country, _) in SITES.items():
        site = sites[_mask(sites["site"], site_id)]
        x_site = _absorbance_snv(spectra_of(site))
        y_site = site["soc"].to_numpy()
        order = np.random.default_rng(2022).permutation(len(y_site))
        calibration, test = order[:N_CALIBRATION], order[N_CALIBRATION:]

        folds = KFold(5, shuffle=True, random_state=0)
        cv_rmse = {
            n: _rmse_me(
                cross_val_predict(
                    PLSRegression(n, scale=False),
                    x_site[calibration],
                    y_site[calibration],
                    cv=folds,
                ),
                y_site[calibration],
            )[0]
            for n in range(1, 9)
        }
        n_local = min(cv_rmse, key=cv_rmse.get)
        local = PLSRegression(n_local, scale=False).fit(x_site[calibration], y_site[calibration])

        in_country = _mask(library["country"], country)
        country_model = PLSRegression(COUNTRY_COMPONENTS, scale=False).fit(
            x_library[in_country], y_library[in_country]
        )
        low, high = y_site[calibration].min(), y_site[calibration].max()
        resembling = in_country & (y_library >= low) & (y_library <= high)
        resembling_model = PLSRegression(COUNTRY_COMPONENTS, scale=False).fit(
            x_library[resembling], y_library[resembling]
        )

        row = {
            "local_components": n_local,
            "resembling_size": int(resembling.sum()),
            "test_soc_sd": float(np.std(y_site[test])),
        }
        for name, model in (
            ("global", global_model),
            ("country", country_model),
            ("country_in_range", resembling_model),
            ("local", local),
        ):
            row[f"{name}_rmse"], row[f"{name}_me"] = _rmse_me(
                model.predict(x_site[test]), y_site[test]
            )
        figures[site_id] = row
    return figures


def _describe(site_id: str, row: dict[str, float]) -> str:
    return f"{site_id}: " + ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
    )


# ------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_byte_identical_tables():
    first_library, first_sites = simulate_ssl(global_size=800, seed=3)
    second_library, second_sites = simulate_ssl(global_size=800, seed=3)
    pd.testing.assert_frame_equal(first_library, second_library, check_exact=True)
    pd.testing.assert_frame_equal(first_sites, second_sites, check_exact=True)
    assert spectra_of(first_library).tobytes() == spectra_of(second_library).tobytes()
    assert (
        pd.util.hash_pandas_object(first_sites).to_numpy().tobytes()
        == pd.util.hash_pandas_object(second_sites).to_numpy().tobytes()
    )


def test_different_seed_gives_different_tables():
    library_a, sites_a = simulate_ssl(global_size=800, seed=3)
    library_b, sites_b = simulate_ssl(global_size=800, seed=4)
    assert not np.allclose(spectra_of(library_a), spectra_of(library_b))
    assert not np.allclose(library_a["soc"], library_b["soc"])
    assert not np.allclose(spectra_of(sites_a), spectra_of(sites_b))


def test_sites_do_not_change_with_global_size():
    _, small = simulate_ssl(global_size=800, seed=11)
    _, large = simulate_ssl(global_size=1600, seed=11)
    pd.testing.assert_frame_equal(small, large, check_exact=True)


# ------------------------------------------------------------------------------------ structure


def test_library_and_sites_are_canonical_tables(tables):
    library, sites = tables
    wavelengths = Grid().wavelengths_nm
    for table in (library, sites):
        assert list(table.columns[: len(META_COLUMNS)]) == list(META_COLUMNS)
        assert band_columns(table) == Grid().columns
        assert len(band_columns(table)) == len(wavelengths) == 211
        reflectance = spectra_of(table)
        assert np.isfinite(reflectance).all()
        assert reflectance.min() > 0.0 and reflectance.max() <= 1.0
        assert table["soc"].notna().all()
    assert len(library) == GLOBAL_SIZE
    assert (library["library"] == "global").all()
    assert library["site"].isna().all()
    assert sites["library"].isna().all()
    ids = pd.concat([library["sample_id"], sites["sample_id"]])
    assert ids.is_unique
    assert ids.str.match(r"^(global-\d{6}|(china|sweden|usa)_site-\d{4})$").all()


def test_sites_have_the_paper_sizes_countries_and_small_extents(tables):
    _, sites = tables
    assert sites["site"].value_counts().to_dict() == {k: n for k, (_, n) in SITES.items()}
    configs = {c.site_id: c for c in default_sites()}
    for site_id, (country, _) in SITES.items():
        site = sites[_mask(sites["site"], site_id)]
        assert (site["country"] == country).all()
        config = configs[site_id]
        north_km = (site["lat"].max() - site["lat"].min()) * 111.32
        east_km = (
            (site["lon"].max() - site["lon"].min()) * 111.32 * np.cos(np.radians(config.latitude))
        )
        assert 0 < north_km <= config.extent_km + 1e-9
        assert 0 < east_km <= config.extent_km + 1e-9
        assert abs(site["lat"].mean() - config.latitude) < 0.2


def test_country_ssls_are_subsets_of_the_global_library(tables):
    library, _ = tables
    expected = country_sizes_for(GLOBAL_SIZE)
    counts = library["country"].value_counts()
    for code, size in expected.items():
        assert counts[code] == size
        # Each country SSL is a set of rows of the global library (the paper's construction).
        subset = library[_mask(library["country"], code)]
        assert subset["sample_id"].isin(library["sample_id"]).all()
    others = library["country"].dropna()
    others = others[~others.isin(list(expected))]
    assert others.nunique() >= 30, "the rest of the library should come from a few dozen countries"
    assert library["country"].isna().sum() > 0, "some library rows should have no country"
    assert library["lat"].dropna().between(-90, 90).all()
    assert library["lon"].dropna().between(-180, 180).all()


def test_country_sizes_scale_with_the_global_size():
    assert country_sizes_for(GLOBAL_SIZE_PAPER) == COUNTRY_SIZES_PAPER
    assert country_sizes_for(1500) == {"CN": 154, "SE": 150, "US": 150}
    assert country_sizes_for(10_000) == {"CN": 1028, "SE": 460, "US": 824}


# ------------------------------------------------------------------------------------ SOC


def _compare(observed: SocStatistics, target: SocStatistics, key: str, *, sd_tolerance: float):
    """Quartiles and mean within 5 %, s.d. within ``sd_tolerance``, range inside the table's."""
    message = f"{key}: simulated {observed} vs Table 1 {target}"
    for name in ("mean", "q1", "median", "q3"):
        assert getattr(observed, name) == pytest.approx(getattr(target, name), rel=0.05), message
    assert observed.sd == pytest.approx(target.sd, rel=sd_tolerance), message
    assert target.minimum <= observed.minimum < target.q1, message
    assert target.q3 < observed.maximum <= target.maximum, message


def test_soc_follows_table_1(tables):
    library, sites = tables
    _compare(
        summarise_soc(library["soc"]), PAPER_SOC_STATISTICS["global"], "global", sd_tolerance=0.15
    )
    for code in ("CN", "SE", "US"):
        soc = library.loc[_mask(library["country"], code), "soc"]
        _compare(summarise_soc(soc), PAPER_SOC_STATISTICS[code], code, sd_tolerance=0.15)
    for site_id, (_, size) in SITES.items():
        observed = summarise_soc(sites.loc[_mask(sites["site"], site_id), "soc"])
        assert observed.count == size
        _compare(observed, PAPER_SOC_STATISTICS[site_id], site_id, sd_tolerance=0.05)


def test_summarise_soc_matches_numpy():
    values = np.array([0.5, 1.0, 1.5, 2.0, 10.0])
    stats = summarise_soc(values)
    assert stats.count == 5
    assert stats.mean == pytest.approx(3.0)
    assert stats.sd == pytest.approx(np.std(values, ddof=1))
    assert (stats.minimum, stats.q1, stats.median, stats.q3, stats.maximum) == (
        0.5,
        1.0,
        1.5,
        2.0,
        10.0,
    )
    with pytest.raises(ValueError, match="at least two"):
        summarise_soc([1.0])


def test_paper_sized_library_works():
    """The paper's 50,422 samples (on a coarse grid to keep the test quick)."""
    library, sites = simulate_ssl(
        global_size=GLOBAL_SIZE_PAPER, seed=SEED, grid=Grid(400, 2500, 100)
    )
    assert library.shape == (GLOBAL_SIZE_PAPER, len(META_COLUMNS) + 22)
    assert library["sample_id"].is_unique
    counts = library["country"].value_counts()
    assert {code: counts[code] for code in COUNTRY_SIZES_PAPER} == COUNTRY_SIZES_PAPER
    reflectance = spectra_of(library)
    assert np.isfinite(reflectance).all() and reflectance.min() > 0 and reflectance.max() <= 1
    stats = summarise_soc(library["soc"])
    target = PAPER_SOC_STATISTICS["global"]
    for name in ("mean", "q1", "median", "q3"):
        assert getattr(stats, name) == pytest.approx(getattr(target, name), rel=0.02), (
            stats,
            target,
        )
    assert stats.sd == pytest.approx(target.sd, rel=0.1), (stats, target)
    # The sites are drawn from their own streams: the same as with a small library and full grid.
    _, small_sites = simulate_ssl(global_size=800, seed=SEED, grid=Grid(400, 2500, 100))
    pd.testing.assert_frame_equal(sites, small_sites, check_exact=True)


# ------------------------------------------------------------------------------------ spectra


def test_component_spectra_have_their_bands_where_expected():
    wavelengths = np.arange(400.0, 2501.0, 1.0)
    spectra = dict(zip(COMPONENTS, component_spectra(wavelengths), strict=True))
    assert all((s >= 0).all() for s in spectra.values())

    def peak(name: str, low: float, high: float) -> float:
        window = (wavelengths >= low) & (wavelengths <= high)
        return float(wavelengths[window][np.argmax(spectra[name][window])])

    assert peak("kaolinite", 2100, 2300) == pytest.approx(2207, abs=5)
    assert peak("smectite", 1800, 2000) == pytest.approx(1912, abs=5)
    assert peak("water", 1800, 2100) == pytest.approx(1940, abs=5)
    assert peak("calcite", 2250, 2450) == pytest.approx(2340, abs=5)
    assert peak("hematite", 750, 1000) == pytest.approx(870, abs=10)
    assert peak("goethite", 750, 1100) == pytest.approx(920, abs=10)
    assert peak("hematite", 500, 700) < 560 and peak("goethite", 500, 600) < 520
    assert 1720 <= peak("organic_fresh", 1650, 1850) <= 1770  # C-H first overtones
    assert 2270 <= peak("organic_fresh", 2200, 2400) <= 2320  # C-H combinations
    visible = (wavelengths >= 400) & (wavelengths <= 650)
    slope = {}
    for organic in ("organic_fresh", "organic_humified"):
        values = spectra[organic][visible]
        assert np.all(np.diff(values[:200]) < 0), (
            f"{organic} should darken the visible, most at 400 nm"
        )
        slope[organic] = values[0] / values[-1]
    # Humified organic matter darkens more evenly (a flatter visible slope) than fresh.
    assert slope["organic_fresh"] > slope["organic_humified"] > 1.3, slope


def test_more_soc_darkens_a_site(tables):
    _, sites = tables
    site = sites[_mask(sites["site"], "usa_site")]
    visible = spectra_of(site)[:, :20].mean(axis=1)  # 400-590 nm
    correlation = np.corrcoef(site["soc"], visible)[0, 1]
    assert correlation < -0.5, f"SOC vs visible reflectance correlation {correlation:.2f}"


# ------------------------------------------------------------------------------------ the problem


def test_library_model_predicts_held_out_library_samples(tables):
    library, _ = tables
    x = _absorbance_snv(spectra_of(library))
    y = library["soc"].to_numpy()
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[: int(0.8 * len(y))], order[int(0.8 * len(y)) :]
    predicted = (
        PLSRegression(GLOBAL_COMPONENTS, scale=False).fit(x[train], y[train]).predict(x[test])
    )
    residual = np.ravel(predicted) - y[test]
    r2 = 1.0 - np.sum(residual**2) / np.sum((y[test] - y[test].mean()) ** 2)
    assert r2 > 0.6, f"library hold-out R2 {r2:.3f}"


@pytest.mark.parametrize("site_id", list(SITES))
def test_global_model_is_biased_on_the_site_and_local_model_is_not(study, site_id):
    row = study[site_id]
    text = _describe(site_id, row)
    assert abs(row["global_me"]) > 0.3 or row["global_rmse"] > 1.5 * row["local_rmse"], text
    assert row["global_rmse"] > 1.5 * row["local_rmse"], text
    assert abs(row["local_me"]) < 0.2, text
    assert row["local_rmse"] < 0.8 * row["test_soc_sd"], text


@pytest.mark.parametrize("site_id", list(SITES))
def test_library_samples_resembling_the_site_beat_the_whole_library(study, site_id):
    row = study[site_id]
    text = _describe(site_id, row)
    assert abs(row["country_in_range_me"]) < abs(row["global_me"]), text
    assert row["country_in_range_rmse"] < row["global_rmse"], text


# ------------------------------------------------------------------------------------ arguments


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="global_size=300 is too small"):
        simulate_ssl(global_size=300)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        simulate_ssl(global_size=800, seed=-1)
    with pytest.raises(ValueError, match="unknown country code"):
        simulate_ssl(global_size=800, country_sizes={"FR": 100})
    site = default_sites()[0]
    with pytest.raises(ValueError, match="site ids must be unique"):
        simulate_ssl(global_size=800, sites=[site, site])


def test_custom_country_sizes_and_sites():
    site = dataclasses.replace(
        default_sites()[2],
        site_id="other_site",
        soc=dataclasses.replace(PAPER_SOC_STATISTICS["usa_site"], count=40),
    )
    library, sites = simulate_ssl(
        global_size=900, seed=1, country_sizes={"CN": 300, "US": 200}, sites=[site]
    )
    assert library["country"].value_counts()[["CN", "US"]].tolist() == [300, 200]
    assert "SE" not in set(library["country"].dropna())
    assert sites["site"].unique().tolist() == ["other_site"] and len(sites) == 40
