"""Deviation of a measurement from theory, in units of the measurement's standard error."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.config import Spec


def deviation(ds: xr.Dataset, theory: xr.Dataset | None = None) -> xr.Dataset:
    """(mean over seeds − theory) / standard error, per grid point (and layer).

    For every statistic ``s`` with both ``ds[s]`` and ``theory["theory_" + s]``: the mean
    over the seeds whose value is finite (overflowed networks are left out), minus the
    theory, divided by std/√count (std with ddof = 1); ``fw_<s>`` the same against the exact
    finite-width ``theory_fw_<s>``, with the prediction's own Monte Carlo error
    ``theory_fw_<s>_error`` (where it has one) added to the standard error in quadrature. At
    batch 1 also ``log_act_norm_mean`` and ``log_act_norm_var``, from y = log act_meansq over
    the seeds with act_meansq > 0 (alive networks, as the law is conditioned), and ``log_grad_weight_norm_mean`` / ``_var`` from
    y = log grad_weight_meansq (per layer): the sample variance's standard error is
    √((m₄ − s⁴)/count), m₄ the fourth central moment.

    Args:
      ds: a measured dataset (``sweep.run`` or ``sweep.load``), dims including ``seed``.
      theory: ``predict(spec)`` for a grid containing ``ds``'s; computed from the spec in
        ``ds.attrs["spec"]`` when omitted.

    Returns:
      A dataset with one variable per compared statistic, dims those of the statistic minus
      ``seed``. NaN where the theory is NaN or fewer than two seeds are finite; ±inf where
      the seeds agree exactly and the theory differs.
    """
    if theory is None:
        from sweep.theory.predict import predict

        theory = predict(Spec.from_json(ds.attrs["spec"]))
    theory = theory.sel({d: ds[d].values for d in theory.dims if d in ds.dims})
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in theory.data_vars:
            key = str(name).removeprefix("theory_")
            stat = key.removeprefix("fw_")
            if stat in ds.data_vars and "seed" in ds[stat].dims:
                x = ds[stat]
                x = x.where(np.isfinite(x))
                count = x.count("seed")
                se = x.std("seed", ddof=1) / np.sqrt(count)
                if f"{name}_error" in theory:
                    se = np.hypot(se, theory[f"{name}_error"])
                out[key] = _wrap((x.mean("seed") - theory[name]) / se, key, "mean")
        spec = Spec.from_json(ds.attrs["spec"]) if "spec" in ds.attrs else None
        if spec is not None and spec.batch == 1:
            for stat, law in (("act_meansq", "log_act_norm"), ("grad_weight_meansq", "log_grad_weight_norm")):
                if stat in ds and f"theory_{law}_mean" in theory:
                    out.update(_log_law(ds[stat], theory, law, stat))
    result = xr.Dataset(out)
    result.attrs.update(title="deviation from theory in standard errors")
    return result


def _log_law(x: xr.DataArray, theory: xr.Dataset, law: str, stat: str) -> dict:
    """Deviations of the mean and variance of log ``x`` over its positive seeds from ``theory_<law>_mean/_var``."""
    y = np.log(x.where(x > 0))
    y = y.where(np.isfinite(y))
    count = y.count("seed")
    mean = y.mean("seed")
    var = y.var("seed", ddof=1)
    m4 = ((y - mean) ** 4).mean("seed")
    return {
        f"{law}_mean": _wrap((mean - theory[f"theory_{law}_mean"]) / np.sqrt(var / count), f"{law}_mean",
                             f"mean of log {stat}"),
        f"{law}_var": _wrap((var - theory[f"theory_{law}_var"]) / np.sqrt((m4 - var**2) / count), f"{law}_var",
                            f"variance of log {stat}"),
    }


def _wrap(da: xr.DataArray, stat: str, what: str) -> xr.DataArray:
    da = da.rename(stat)
    da.attrs = {"long_name": f"deviation of {stat} from theory", "units": "standard errors",
                "definition": f"({what} over seeds − theory) / (std over seeds / √seeds)"}
    return da
