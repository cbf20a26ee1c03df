"""Hand the best candidate to AWS Lambda: a zip or a container build context around a torch-free handler,
invoked the way Lambda would invoke it, with cold start, cost and a memory recommendation.

handler.py and slim.py are copied verbatim into packages, so they import nothing from the project."""
