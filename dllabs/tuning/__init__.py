"""Parameter search: Optuna studies whose trials are DVC experiments (``dl-labs tune``).

``space`` (the search space, as data in ``conf/tune/``) -> ``study`` (storage, sampler, pruner) ->
``command`` (a trial is ``dvc exp run``: ``experiments``) -> ``report``; ``pruning`` is the
training stage's side of a trial, ``labs`` what each lab offers a search.
"""
