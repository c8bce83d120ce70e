"""The sentence a Glance or Placement fault's text starts with, by HTTP status (both answer
through WebOb, whose wording clients see before the message itself)."""

from __future__ import annotations

EXPLANATIONS = {
    400: "The server could not comply with the request since it is either malformed or "
         "otherwise incorrect.",
    401: "This server could not verify that you are authorized to access the document you "
         "requested.",
    403: "Access was denied to this resource.",
    404: "The resource could not be found.",
    405: "The method is not allowed for this resource.",
    406: "The server could not produce a response in a format the client accepts.",
    409: "There was a conflict when trying to complete your request.",
    413: "The request is larger than the server is willing or able to process.",
    415: "The request media type is not supported by this server.",
    416: "The Range requested is not available.",
    500: "The server has either erred or is incapable of performing the requested "
         "operation.",
    501: "The server has not implemented this feature.",
    503: "The server is currently unavailable. Please try again at a later time.",
}
