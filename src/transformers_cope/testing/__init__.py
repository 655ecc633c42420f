"""Test doubles that ship with the package so examples and downstream tests can use them, kept apart from the
product code: nothing in `transformers_cope` imports from here.

- `hub_server.LocalHubServer`: an in-memory Hugging Face Hub on 127.0.0.1 (push and download round trips offline).
"""
