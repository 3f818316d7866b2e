"""The OpenAPI 3 description of the service, served at /openapi.json.

tests/test_openapi.py checks it against the app's routes and real responses, and
`inv fuzz` runs schemathesis against it.
"""

from email_validator.rfc_constants import EMAIL_MAX_LENGTH as MAX_EMAIL_LENGTH

from app.models import MAX_ID
from app.users import DEFAULT_PAGE, MAX_PAGE


def error(description: str) -> dict:
    return {"description": description, "content": json_content("Error")}


def json_content(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}


USER_ID = {
    "name": "user_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}


def openapi_document() -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": "Flask + PostgreSQL skeleton", "version": "1.0.0"},
        "paths": {
            "/": {
                "get": {
                    "summary": "Greeting",
                    "responses": {
                        "200": {
                            "description": "Hello",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/health": {
                "get": {
                    "summary": "Whether the service and its database answer",
                    "responses": {
                        "200": {"description": "All answer", "content": json_content("Health")},
                        "503": {
                            "description": "The database does not answer in time",
                            "content": json_content("Health"),
                        },
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            "/users": {
                "get": {
                    "operationId": "listUsers",
                    "summary": "A page of users in id order",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "description": f"page size, default {DEFAULT_PAGE}, capped at {MAX_PAGE}",
                            "schema": {"type": "integer", "minimum": 1},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "description": "the cursor: `next_after` of the previous page",
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": {"description": "A page", "content": json_content("UserPage")},
                        "400": error("limit or after is not a valid number"),
                        "503": error("The database is unavailable"),
                    },
                },
                "post": {
                    "operationId": "createUser",
                    "summary": "Create a user",
                    "requestBody": {
                        "required": True,
                        "content": json_content("NewUser"),
                    },
                    "responses": {
                        "201": {
                            "description": "Created",
                            "headers": {
                                "Location": {
                                    "description": "the new user's URL",
                                    "schema": {"type": "string"},
                                }
                            },
                            "content": json_content("User"),
                            "links": {
                                "GetUser": {
                                    "operationId": "getUser",
                                    "parameters": {"user_id": "$response.body#/id"},
                                },
                                "DeleteUser": {
                                    "operationId": "deleteUser",
                                    "parameters": {"user_id": "$response.body#/id"},
                                },
                            },
                        },
                        "400": error("Malformed JSON, or a missing or invalid field"),
                        "409": error("A user with this email (ignoring case) exists"),
                        "413": error("The body is too large"),
                        "415": error("The body is not JSON"),
                        "503": error("The database is unavailable"),
                    },
                },
            },
            "/users/{user_id}": {
                "parameters": [USER_ID],
                "get": {
                    "operationId": "getUser",
                    "summary": "One user",
                    "responses": {
                        "200": {"description": "The user", "content": json_content("User")},
                        "404": error("No such user"),
                        "503": error("The database is unavailable"),
                    },
                },
                "delete": {
                    "operationId": "deleteUser",
                    "summary": "Delete a user",
                    "responses": {
                        "204": {"description": "Deleted"},
                        "404": error("No such user"),
                        "503": error("The database is unavailable"),
                    },
                },
            },
        },
        "components": {
            "schemas": {
                "NewUser": {
                    "type": "object",
                    "required": ["email"],
                    "properties": {
                        "email": {
                            "type": "string",
                            "format": "email",
                            "maxLength": MAX_EMAIL_LENGTH,
                            "description": "trimmed, its domain lower-cased; unique ignoring case",
                        }
                    },
                },
                "User": {
                    "type": "object",
                    "required": ["id", "email"],
                    "properties": {
                        "id": {"type": "integer", "minimum": 1},
                        "email": {"type": "string", "maxLength": MAX_EMAIL_LENGTH},
                    },
                    "additionalProperties": False,
                },
                "UserPage": {
                    "type": "object",
                    "required": ["users", "next_after"],
                    "properties": {
                        "users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
                        "next_after": {"type": "integer", "nullable": True},
                    },
                    "additionalProperties": False,
                },
                "Health": {
                    "type": "object",
                    "required": ["status", "database"],
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "unavailable"]},
                        "database": {"type": "string", "enum": ["ok", "unavailable"]},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            }
        },
    }
