"""Deviation of a measurement from theory, in units of the measurement's standard error."""

from __future__ import annotations

import numpy as np
import xarray as xr

from sweep.config import Spec


def deviation(ds: xr.Dataset, theory: xr.Dataset | None = None) -> xr.Dataset:
    """(mean over seeds − theory) / standard error, per grid point (and layer).

    For every statistic ``s`` with both ``ds[s]`` and ``theory["theory_" + s]``: the mean
    over the seeds whose value is finite (overflowed networks are left out), minus the
    theory, divided by std/√count (std with ddof = 1). At batch 1 also ``log_act_norm_mean``
    and ``log_act_norm_var``, from y = log act_meansq over the seeds with act_meansq > 0
    (alive networks, as the law is conditioned): the sample variance's standard error is
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
            stat = str(name).removeprefix("theory_")
            if stat in ds.data_vars and "seed" in ds[stat].dims:
                x = ds[stat]
                x = x.where(np.isfinite(x))
                count = x.count("seed")
                se = x.std("seed", ddof=1) / np.sqrt(count)
                out[stat] = _wrap((x.mean("seed") - theory[name]) / se, stat, "mean")
        spec = Spec.from_json(ds.attrs["spec"]) if "spec" in ds.attrs else None
        if spec is not None and spec.batch == 1 and "act_meansq" in ds and "theory_log_act_norm_mean" in theory:
            y = np.log(ds["act_meansq"].where(ds["act_meansq"] > 0))
            y = y.where(np.isfinite(y))
            count = y.count("seed")
            mean = y.mean("seed")
            var = y.var("seed", ddof=1)
            out["log_act_norm_mean"] = _wrap((mean - theory["theory_log_act_norm_mean"]) / np.sqrt(var / count),
                                             "log_act_norm_mean", "mean of log act_meansq")
            m4 = ((y - mean) ** 4).mean("seed")
            out["log_act_norm_var"] = _wrap((var - theory["theory_log_act_norm_var"]) / np.sqrt((m4 - var**2) / count),
                                            "log_act_norm_var", "variance of log act_meansq")
    result = xr.Dataset(out)
    result.attrs.update(title="deviation from theory in standard errors")
    return result


def _wrap(da: xr.DataArray, stat: str, what: str) -> xr.DataArray:
    da = da.rename(stat)
    da.attrs = {"long_name": f"deviation of {stat} from theory", "units": "standard errors",
                "definition": f"({what} over seeds − theory) / (std over seeds / √seeds)"}
    return da
