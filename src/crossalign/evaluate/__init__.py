"""Evaluators: callables returning flat `dict[str, float]` with keys like `text->image/R@1`."""
