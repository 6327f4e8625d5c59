"""atb: a paper-trading bot whose money you can trust (everything Chalice deploys besides ``app.py``)."""
