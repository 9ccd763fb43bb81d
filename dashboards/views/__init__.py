"""The page scripts the router in dashboards/app.py runs (exec, on-call, debug)."""
