"""The service edge: the REST API under ``/api/v1`` (``create_app``) and who may do what (``auth``)."""

from endcredits.service.app import create_app

__all__ = ["create_app"]
