"""The life of a scale operation after the pipeline: its record, and the commands that
check it (``validate``), count it (``stats``) and undo it (``rollback``).

``record`` owns the ``(:ScaleOperation)`` node: how a run starts, resumes, fails and
finishes; the commands read and change the graph only through what it and the model
(``transforms.model``) define.
"""
