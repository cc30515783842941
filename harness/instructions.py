"""Task descriptions for KaLM's query-side instruction template, shared by training and eval.

The same text must reach a training row and the evaluation task it prepares for, so both
read it from here. Symmetric tasks (bitext, STS, pair classification) get none (KaLM).
"""

CODE_RETRIEVAL = "Given a Python docstring, retrieve the function that implements it."
RETRIEVAL = "Given a query, retrieve documents that answer the query."
CODE_RERANKING = "Given a Python docstring, rank the functions of its module by whether they implement it."
DOCSTRING_CLASSIFICATION = "Classify a Python docstring by the standard-library package it comes from."
TERRITORY_CLUSTERING = "Identify the continent and the country or territory a name refers to."

# Default instruction per training-source kind (None = symmetric task, no instruction).
SOURCE_INSTRUCTIONS: dict[str, str | None] = {
    "stdlib-code": CODE_RETRIEVAL,
    "cldr-bitext": None,
    "febrl-pairs": None,  # symmetric: two records of one person
    "flag-jsonl": None,  # FlagEmbedding rows carry their own instruction, if any
}
