"""The model gateway: agents reach their model only through it, with a per-task token."""

from gateway.ledger import Budget, BudgetKind, Exchange, TaskUsage
from gateway.routes import Provider, Providers, Upstream
from gateway.server import ModelGateway, UnknownTaskError

__all__ = [
    "Budget",
    "BudgetKind",
    "Exchange",
    "ModelGateway",
    "Provider",
    "Providers",
    "TaskUsage",
    "UnknownTaskError",
    "Upstream",
]
