/// The OpenAPI 3.1 document of the registry's REST API, served at `GET /openapi.json`.
/// It is kept as a Swift string so that the executable carries it without a resource bundle;
/// `RegistryAPITests` fails when a route of `RegistryAPI.routes` is missing here, when a path here
/// is not served, or when the document is not valid OpenAPI 3.1.
enum RegistryOpenAPI {
    static let text = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "ModelFleet registry",
            "version": "0.1.0",
            "description": "The registry owns ModelFleet's model catalogue (models and their versions: artifacts, checksums, default settings) and the fleet inventory (sites, edge servers, their devices and device groups). Servers and devices are recorded from the agents' hellos and presence; operators name, enable, group and label devices here. Every error is answered with the Error body, `{\"error\": {\"code\": \"...\", \"message\": \"...\", \"field\": \"...\"}}`, `field` naming the field at fault when there is one. Lists answer `{\"items\": [...], \"next_cursor\": \"...\"}`; `next_cursor` is absent on the last page. Dates are ISO 8601 with milliseconds, in UTC. The operations endpoints `GET /health`, `/ready` and `/metrics` are not part of this document."
          },
          "servers": [
            {
              "url": "http://127.0.0.1:8081"
            }
          ],
          "tags": [
            {
              "name": "Models",
              "description": "The model catalogue."
            },
            {
              "name": "Sites",
              "description": "Sites and their device groups."
            },
            {
              "name": "Servers",
              "description": "Edge servers, as their agents describe them."
            },
            {
              "name": "Devices",
              "description": "Devices on the edge servers."
            },
            {
              "name": "Document",
              "description": "This document."
            }
          ],
          "paths": {
            "/openapi.json": {
              "get": {
                "operationId": "getOpenAPIDocument",
                "tags": [
                  "Document"
                ],
                "summary": "This OpenAPI 3.1 document.",
                "responses": {
                  "200": {
                    "description": "The document.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object",
                          "description": "An OpenAPI 3.1 document."
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/models": {
              "post": {
                "operationId": "createModel",
                "tags": [
                  "Models"
                ],
                "summary": "Adds a model to the catalogue (without versions).",
                "requestBody": {
                  "required": true,
                  "description": "The model.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewModel"
                      }
                    }
                  }
                },
                "responses": {
                  "201": {
                    "description": "The model, with an empty `versions`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Model"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "A field is missing or invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "A model with this name exists already (`field` is `name`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              },
              "get": {
                "operationId": "listModels",
                "tags": [
                  "Models"
                ],
                "summary": "Lists the catalogue's models, one page at a time, without their versions.",
                "parameters": [
                  {
                    "name": "task",
                    "in": "query",
                    "required": false,
                    "description": "Only the models for this task.",
                    "schema": {
                      "$ref": "#/components/schemas/ModelTask"
                    }
                  },
                  {
                    "name": "label",
                    "in": "query",
                    "required": false,
                    "description": "Only the models that carry this label.",
                    "schema": {
                      "type": "string"
                    }
                  },
                  {
                    "name": "status",
                    "in": "query",
                    "required": false,
                    "description": "Only the models with at least one version in this status.",
                    "schema": {
                      "$ref": "#/components/schemas/VersionStatus"
                    }
                  },
                  {
                    "name": "q",
                    "in": "query",
                    "required": false,
                    "description": "Only the models whose name contains this text (case-insensitive; `%` and `_` are literal).",
                    "schema": {
                      "type": "string"
                    }
                  },
                  {
                    "name": "limit",
                    "in": "query",
                    "required": false,
                    "description": "How many items a page holds at most.",
                    "schema": {
                      "type": "integer",
                      "minimum": 1,
                      "maximum": 1000,
                      "default": 100
                    }
                  },
                  {
                    "name": "cursor",
                    "in": "query",
                    "required": false,
                    "description": "The `next_cursor` of the previous page; opaque.",
                    "schema": {
                      "type": "string"
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "A page of models.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/ModelPage"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`task`, `status`, `limit` or `cursor` is invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/models/{model_id}": {
              "parameters": [
                {
                  "name": "model_id",
                  "in": "path",
                  "required": true,
                  "description": "The model's id.",
                  "schema": {
                    "type": "string",
                    "format": "uuid"
                  }
                }
              ],
              "get": {
                "operationId": "getModel",
                "tags": [
                  "Models"
                ],
                "summary": "Gets a model with all its versions.",
                "responses": {
                  "200": {
                    "description": "The model, with `versions`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Model"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`model_id` is not a UUID.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no model with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              },
              "patch": {
                "operationId": "updateModel",
                "tags": [
                  "Models"
                ],
                "summary": "Changes a model's description and/or labels.",
                "requestBody": {
                  "required": true,
                  "description": "The fields to change; at least one.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/ModelUpdate"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "The model after the change, with `versions`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Model"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`model_id` is not a UUID, the body changes nothing, or a field is invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no model with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              },
              "delete": {
                "operationId": "deleteModel",
                "tags": [
                  "Models"
                ],
                "summary": "Deletes a model that has no versions left.",
                "responses": {
                  "204": {
                    "description": "Deleted."
                  },
                  "400": {
                    "description": "`model_id` is not a UUID.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no model with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "The model still has versions; delete them first.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/models/{model_id}/versions": {
              "parameters": [
                {
                  "name": "model_id",
                  "in": "path",
                  "required": true,
                  "description": "The model's id.",
                  "schema": {
                    "type": "string",
                    "format": "uuid"
                  }
                }
              ],
              "post": {
                "operationId": "addModelVersion",
                "tags": [
                  "Models"
                ],
                "summary": "Adds a version (an artifact) to a model.",
                "requestBody": {
                  "required": true,
                  "description": "The version.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewModelVersion"
                      }
                    }
                  }
                },
                "responses": {
                  "201": {
                    "description": "The version, `active`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/ModelVersion"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`model_id` is not a UUID, or a field is missing or invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no model with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "The model has this version already (`field` is `version`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/models/{model_id}/versions/{version}": {
              "parameters": [
                {
                  "name": "model_id",
                  "in": "path",
                  "required": true,
                  "description": "The model's id.",
                  "schema": {
                    "type": "string",
                    "format": "uuid"
                  }
                },
                {
                  "name": "version",
                  "in": "path",
                  "required": true,
                  "description": "The version, a semantic version (MAJOR.MINOR.PATCH).",
                  "schema": {
                    "$ref": "#/components/schemas/SemanticVersion"
                  }
                }
              ],
              "get": {
                "operationId": "getModelVersion",
                "tags": [
                  "Models"
                ],
                "summary": "Gets one version of a model.",
                "responses": {
                  "200": {
                    "description": "The version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/ModelVersion"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`model_id` is not a UUID or `version` is not a semantic version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no such model, or it has no such version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              },
              "delete": {
                "operationId": "deleteModelVersion",
                "tags": [
                  "Models"
                ],
                "summary": "Deletes one version of a model that no device's pipeline uses.",
                "description": "The registry asks the orchestrator (over MQTT) which devices' pipelines have a stage on the version, assigned whether or not applied yet. A version in use is refused with 409 `version_in_use`, naming the first devices; without the orchestrator's answer within 3 s the delete is refused with 503 `orchestrator_unavailable`.",
                "responses": {
                  "204": {
                    "description": "Deleted."
                  },
                  "400": {
                    "description": "`model_id` is not a UUID or `version` is not a semantic version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no such model, or it has no such version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`version_in_use`: a device's pipeline uses the version; the message names the first devices and their pipelines (`field`: `version`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "`orchestrator_unavailable`: the orchestrator did not answer whether a pipeline uses the version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/models/{model_id}/versions/{version}/deprecate": {
              "parameters": [
                {
                  "name": "model_id",
                  "in": "path",
                  "required": true,
                  "description": "The model's id.",
                  "schema": {
                    "type": "string",
                    "format": "uuid"
                  }
                },
                {
                  "name": "version",
                  "in": "path",
                  "required": true,
                  "description": "The version, a semantic version (MAJOR.MINOR.PATCH).",
                  "schema": {
                    "$ref": "#/components/schemas/SemanticVersion"
                  }
                }
              ],
              "post": {
                "operationId": "deprecateModelVersion",
                "tags": [
                  "Models"
                ],
                "summary": "Marks a version deprecated (idempotent).",
                "responses": {
                  "200": {
                    "description": "The version, `deprecated`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/ModelVersion"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`model_id` is not a UUID or `version` is not a semantic version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no such model, or it has no such version.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/sites": {
              "get": {
                "operationId": "listSites",
                "tags": [
                  "Sites"
                ],
                "summary": "Lists all sites in one page, by id.",
                "responses": {
                  "200": {
                    "description": "Every site; `next_cursor` is absent.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/SiteList"
                        }
                      }
                    }
                  }
                }
              },
              "post": {
                "operationId": "createSite",
                "tags": [
                  "Sites"
                ],
                "summary": "Adds a site (agents also add their site when they first say hello).",
                "requestBody": {
                  "required": true,
                  "description": "The site.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewSite"
                      }
                    }
                  }
                },
                "responses": {
                  "201": {
                    "description": "The site.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Site"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "A field is missing or invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "A site with this id exists already (`field` is `id`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/sites/{site_id}": {
              "parameters": [
                {
                  "name": "site_id",
                  "in": "path",
                  "required": true,
                  "description": "The site's id.",
                  "schema": {
                    "$ref": "#/components/schemas/Identifier"
                  }
                }
              ],
              "get": {
                "operationId": "getSitePage",
                "tags": [
                  "Sites"
                ],
                "summary": "Gets a site with its servers, its device groups and the first page of its devices.",
                "responses": {
                  "200": {
                    "description": "The site page.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/SitePage"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`site_id` is not a valid identifier.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no site with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/sites/{site_id}/groups": {
              "parameters": [
                {
                  "name": "site_id",
                  "in": "path",
                  "required": true,
                  "description": "The site's id.",
                  "schema": {
                    "$ref": "#/components/schemas/Identifier"
                  }
                }
              ],
              "get": {
                "operationId": "listDeviceGroups",
                "tags": [
                  "Sites"
                ],
                "summary": "Lists a site's device groups in one page, by name.",
                "responses": {
                  "200": {
                    "description": "Every group of the site; `next_cursor` is absent.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/DeviceGroupList"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`site_id` is not a valid identifier.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no site with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              },
              "post": {
                "operationId": "createDeviceGroup",
                "tags": [
                  "Sites"
                ],
                "summary": "Adds a device group to a site.",
                "requestBody": {
                  "required": true,
                  "description": "The group.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewDeviceGroup"
                      }
                    }
                  }
                },
                "responses": {
                  "201": {
                    "description": "The group.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/DeviceGroup"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`site_id` is not a valid identifier, or `name` is missing or invalid.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no site with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "The site has a group with this name already (`field` is `name`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/sites/{site_id}/groups/{group_id}": {
              "parameters": [
                {
                  "name": "site_id",
                  "in": "path",
                  "required": true,
                  "description": "The site's id.",
                  "schema": {
                    "$ref": "#/components/schemas/Identifier"
                  }
                },
                {
                  "name": "group_id",
                  "in": "path",
                  "required": true,
                  "description": "The device group's id.",
                  "schema": {
                    "type": "string",
                    "format": "uuid"
                  }
                }
              ],
              "delete": {
                "operationId": "deleteDeviceGroup",
                "tags": [
                  "Sites"
                ],
                "summary": "Deletes a device group; its devices leave it.",
                "responses": {
                  "204": {
                    "description": "Deleted."
                  },
                  "400": {
                    "description": "`site_id` is not a valid identifier or `group_id` is not a UUID.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "The site has no group with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/servers": {
              "get": {
                "operationId": "listServers",
                "tags": [
                  "Servers"
                ],
                "summary": "Lists servers (edge agents) in one page, by id.",
                "parameters": [
                  {
                    "name": "site",
                    "in": "query",
                    "required": false,
                    "description": "Only the servers of this site.",
                    "schema": {
                      "$ref": "#/components/schemas/Identifier"
                    }
                  },
                  {
                    "name": "online",
                    "in": "query",
                    "required": false,
                    "description": "Only the servers that are online (`true`) or offline (`false`).",
                    "schema": {
                      "type": "boolean"
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "The servers; `next_cursor` is absent.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/ServerList"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`site` or `online` is invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/servers/{server_id}": {
              "parameters": [
                {
                  "name": "server_id",
                  "in": "path",
                  "required": true,
                  "description": "The server's id (its agent's id).",
                  "schema": {
                    "$ref": "#/components/schemas/Identifier"
                  }
                }
              ],
              "get": {
                "operationId": "getServer",
                "tags": [
                  "Servers"
                ],
                "summary": "Gets a server.",
                "responses": {
                  "200": {
                    "description": "The server.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Server"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`server_id` is not a valid identifier.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no server with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/devices": {
              "get": {
                "operationId": "listDevices",
                "tags": [
                  "Devices"
                ],
                "summary": "Lists devices, one page at a time; every filter narrows the list.",
                "parameters": [
                  {
                    "name": "site",
                    "in": "query",
                    "required": false,
                    "description": "Only the devices of this site.",
                    "schema": {
                      "$ref": "#/components/schemas/Identifier"
                    }
                  },
                  {
                    "name": "server",
                    "in": "query",
                    "required": false,
                    "description": "Only the devices of this server.",
                    "schema": {
                      "$ref": "#/components/schemas/Identifier"
                    }
                  },
                  {
                    "name": "group",
                    "in": "query",
                    "required": false,
                    "description": "Only the devices in this device group.",
                    "schema": {
                      "type": "string",
                      "format": "uuid"
                    }
                  },
                  {
                    "name": "label",
                    "in": "query",
                    "required": false,
                    "description": "Only the devices that carry every one of these labels; repeat the parameter for several.",
                    "schema": {
                      "type": "array",
                      "maxItems": 32,
                      "items": {
                        "$ref": "#/components/schemas/Label"
                      }
                    },
                    "style": "form",
                    "explode": true
                  },
                  {
                    "name": "enabled",
                    "in": "query",
                    "required": false,
                    "description": "Only the enabled (`true`) or disabled (`false`) devices.",
                    "schema": {
                      "type": "boolean"
                    }
                  },
                  {
                    "name": "online",
                    "in": "query",
                    "required": false,
                    "description": "Only the devices that are reachable (`true`: their server is online and they are not gone) or not (`false`).",
                    "schema": {
                      "type": "boolean"
                    }
                  },
                  {
                    "name": "limit",
                    "in": "query",
                    "required": false,
                    "description": "How many items a page holds at most.",
                    "schema": {
                      "type": "integer",
                      "minimum": 1,
                      "maximum": 1000,
                      "default": 100
                    }
                  },
                  {
                    "name": "cursor",
                    "in": "query",
                    "required": false,
                    "description": "The `next_cursor` of the previous page; opaque.",
                    "schema": {
                      "type": "string"
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "A page of devices.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/DevicePage"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "A query parameter is invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/devices/{device_id}": {
              "parameters": [
                {
                  "name": "device_id",
                  "in": "path",
                  "required": true,
                  "description": "The device's id.",
                  "schema": {
                    "type": "string",
                    "format": "uuid"
                  }
                }
              ],
              "get": {
                "operationId": "getDevice",
                "tags": [
                  "Devices"
                ],
                "summary": "Gets a device.",
                "responses": {
                  "200": {
                    "description": "The device.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Device"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`device_id` is not a UUID.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no device with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              },
              "patch": {
                "operationId": "updateDevice",
                "tags": [
                  "Devices"
                ],
                "summary": "Changes a device's name, enabled flag, group and/or labels.",
                "requestBody": {
                  "required": true,
                  "description": "The fields to change; at least one.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/DeviceUpdate"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "The device after the change.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Device"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`device_id` is not a UUID, the body changes nothing, a field is invalid, or `group_id` is not a group of the device's site; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no device with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  }
                }
              }
            }
          },
          "components": {
            "schemas": {
              "Error": {
                "type": "object",
                "description": "The body of every 4xx and 5xx answer.",
                "required": [
                  "error"
                ],
                "properties": {
                  "error": {
                    "type": "object",
                    "required": [
                      "code",
                      "message"
                    ],
                    "properties": {
                      "code": {
                        "type": "string",
                        "description": "What went wrong, for programs: `invalid_field` (400), `not_found` (404), `conflict` (409), `internal` (500), or `http_<status>` for other HTTP errors.",
                        "examples": [
                          "invalid_field",
                          "not_found",
                          "conflict"
                        ]
                      },
                      "message": {
                        "type": "string",
                        "description": "What went wrong, for people."
                      },
                      "field": {
                        "type": "string",
                        "description": "The request field, path or query parameter at fault (`labels[2]`, `default_settings.nms_threshold`); absent when no single field is."
                      }
                    }
                  }
                }
              },
              "JSONValue": {
                "description": "Any JSON value (free-form)."
              },
              "Identifier": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "pattern": "^(?!\\.\\.?$)[A-Za-z0-9._-]{1,128}$",
                "description": "An id that is also an MQTT topic level: 1 to 128 ASCII letters, digits, '-', '_' and '.', not '.' or '..'."
              },
              "Name": {
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "pattern": "^[^\\x00-\\x1F\\x7F-\\x9F]*$",
                "description": "A display name: surrounding spaces are trimmed, then 1 to 128 characters without control characters."
              },
              "Label": {
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": "^([A-Za-z0-9._:/-]|[^\\x00-\\x7F])+$",
                "description": "1 to 64 letters, digits (of any script), '-', '_', '.', ':' or '/'."
              },
              "SemanticVersion": {
                "type": "string",
                "maxLength": 64,
                "pattern": "^(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)\\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\\+[0-9A-Za-z.-]+)?$",
                "description": "A semantic version: MAJOR.MINOR.PATCH with optional -pre-release and +build parts."
              },
              "ModelTask": {
                "type": "string",
                "enum": [
                  "object_detection",
                  "classification",
                  "segmentation",
                  "pose_estimation",
                  "ocr",
                  "embedding",
                  "other"
                ],
                "description": "What a model is for."
              },
              "ModelFormat": {
                "type": "string",
                "enum": [
                  "onnx",
                  "tensorrt",
                  "openvino",
                  "tflite",
                  "torchscript",
                  "other"
                ],
                "description": "The serialised form of a model's weights."
              },
              "VersionStatus": {
                "type": "string",
                "enum": [
                  "active",
                  "deprecated"
                ],
                "description": "Whether a version is for new deployments (`active`) or not (`deprecated`)."
              },
              "ModelSettings": {
                "type": "object",
                "description": "A version's default inference settings. The keys below are checked; any other key is kept as given.",
                "properties": {
                  "confidence_threshold": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "The minimum confidence of a result, 0 to 1."
                  },
                  "nms_threshold": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "The non-maximum suppression threshold, 0 to 1."
                  },
                  "iou_threshold": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "description": "The intersection-over-union threshold, 0 to 1."
                  },
                  "input_size": {
                    "description": "The input side in pixels, or [width, height]; 1 to 8192.",
                    "oneOf": [
                      {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 8192
                      },
                      {
                        "type": "array",
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {
                          "type": "number",
                          "minimum": 1,
                          "maximum": 8192
                        }
                      }
                    ]
                  },
                  "max_detections": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The most results per frame."
                  }
                },
                "additionalProperties": {
                  "$ref": "#/components/schemas/JSONValue"
                }
              },
              "Model": {
                "type": "object",
                "description": "A model of the catalogue.",
                "required": [
                  "id",
                  "name",
                  "description",
                  "task",
                  "format",
                  "labels",
                  "created_at",
                  "updated_at"
                ],
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The model's id."
                  },
                  "name": {
                    "$ref": "#/components/schemas/Name",
                    "description": "Unique in the catalogue."
                  },
                  "description": {
                    "type": "string",
                    "maxLength": 2000,
                    "description": "Empty when none was given."
                  },
                  "task": {
                    "$ref": "#/components/schemas/ModelTask"
                  },
                  "format": {
                    "$ref": "#/components/schemas/ModelFormat"
                  },
                  "labels": {
                    "type": "array",
                    "uniqueItems": true,
                    "items": {
                      "$ref": "#/components/schemas/Label"
                    },
                    "description": "Sorted, without duplicates."
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the model was added. ISO 8601 with milliseconds, UTC."
                  },
                  "updated_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the model or its versions last changed. ISO 8601 with milliseconds, UTC."
                  },
                  "versions": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/ModelVersion"
                    },
                    "description": "The model's versions, oldest first; present on a single model's answers, absent in lists."
                  }
                }
              },
              "ModelVersion": {
                "type": "object",
                "description": "One version of a model: an artifact with its checksum and default settings.",
                "required": [
                  "model_id",
                  "version",
                  "artifact_uri",
                  "sha256",
                  "size_bytes",
                  "inputs",
                  "outputs",
                  "default_settings",
                  "status",
                  "created_at"
                ],
                "properties": {
                  "model_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The model's id."
                  },
                  "version": {
                    "$ref": "#/components/schemas/SemanticVersion"
                  },
                  "artifact_uri": {
                    "type": "string",
                    "maxLength": 2048,
                    "description": "Where the weights are: a file, http(s), s3 or oci URI."
                  },
                  "sha256": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": "The artifact's SHA-256, lower-case hexadecimal."
                  },
                  "size_bytes": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1,
                    "description": "The artifact's size in bytes."
                  },
                  "inputs": {
                    "$ref": "#/components/schemas/JSONValue",
                    "description": "A free-form description of the inputs; `{}` when none was given."
                  },
                  "outputs": {
                    "$ref": "#/components/schemas/JSONValue",
                    "description": "A free-form description of the outputs; `{}` when none was given."
                  },
                  "default_settings": {
                    "$ref": "#/components/schemas/ModelSettings"
                  },
                  "status": {
                    "$ref": "#/components/schemas/VersionStatus"
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When the version was added. ISO 8601 with milliseconds, UTC."
                  }
                }
              },
              "NewModel": {
                "type": "object",
                "description": "A model to add to the catalogue.",
                "required": [
                  "name",
                  "task",
                  "format"
                ],
                "properties": {
                  "name": {
                    "$ref": "#/components/schemas/Name",
                    "description": "Unique in the catalogue."
                  },
                  "description": {
                    "type": "string",
                    "maxLength": 2000,
                    "description": "Empty when absent."
                  },
                  "task": {
                    "$ref": "#/components/schemas/ModelTask"
                  },
                  "format": {
                    "$ref": "#/components/schemas/ModelFormat"
                  },
                  "labels": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                      "$ref": "#/components/schemas/Label"
                    },
                    "description": "At most 32 labels; duplicates are dropped and the rest sorted."
                  }
                }
              },
              "ModelUpdate": {
                "type": "object",
                "description": "A change to a model; give at least one field. Absent fields are kept.",
                "properties": {
                  "description": {
                    "type": "string",
                    "maxLength": 2000
                  },
                  "labels": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                      "$ref": "#/components/schemas/Label"
                    },
                    "description": "Replaces the labels. At most 32 labels; duplicates are dropped and the rest sorted."
                  }
                },
                "anyOf": [
                  {
                    "required": [
                      "description"
                    ]
                  },
                  {
                    "required": [
                      "labels"
                    ]
                  }
                ]
              },
              "NewModelVersion": {
                "type": "object",
                "description": "A version to add to a model.",
                "required": [
                  "version",
                  "artifact_uri",
                  "sha256",
                  "size_bytes"
                ],
                "properties": {
                  "version": {
                    "$ref": "#/components/schemas/SemanticVersion",
                    "description": "Unique within the model."
                  },
                  "artifact_uri": {
                    "type": "string",
                    "maxLength": 2048,
                    "pattern": "^([Ff][Ii][Ll][Ee]|[Hh][Tt][Tt][Pp][Ss]?|[Ss]3|[Oo][Cc][Ii]):",
                    "description": "Where the weights are: a file, http(s), s3 or oci URI with a host or a path."
                  },
                  "sha256": {
                    "type": "string",
                    "pattern": "^[0-9a-fA-F]{64}$",
                    "description": "The artifact's SHA-256 in hexadecimal; stored lower-case."
                  },
                  "size_bytes": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 1,
                    "description": "The artifact's size in bytes."
                  },
                  "inputs": {
                    "$ref": "#/components/schemas/JSONValue",
                    "description": "A free-form description of the inputs; `{}` when absent."
                  },
                  "outputs": {
                    "$ref": "#/components/schemas/JSONValue",
                    "description": "A free-form description of the outputs; `{}` when absent."
                  },
                  "default_settings": {
                    "$ref": "#/components/schemas/ModelSettings"
                  }
                }
              },
              "ModelPage": {
                "type": "object",
                "description": "A page of models (without their versions).",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Model"
                    }
                  },
                  "next_cursor": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "description": "The `cursor` of the next page; absent (or null) on the last page."
                  }
                }
              },
              "Site": {
                "type": "object",
                "description": "A site: a place with edge servers.",
                "required": [
                  "id",
                  "name",
                  "online",
                  "server_count",
                  "device_count"
                ],
                "properties": {
                  "id": {
                    "$ref": "#/components/schemas/Identifier"
                  },
                  "name": {
                    "$ref": "#/components/schemas/Name"
                  },
                  "online": {
                    "type": "boolean",
                    "description": "True when at least one of its servers is online."
                  },
                  "server_count": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How many servers it has."
                  },
                  "device_count": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How many devices its servers have, not counting gone ones."
                  }
                }
              },
              "NewSite": {
                "type": "object",
                "description": "A site to add.",
                "required": [
                  "id",
                  "name"
                ],
                "properties": {
                  "id": {
                    "$ref": "#/components/schemas/Identifier",
                    "description": "Unique."
                  },
                  "name": {
                    "$ref": "#/components/schemas/Name"
                  }
                }
              },
              "SiteList": {
                "type": "object",
                "description": "All sites, by id, in one page.",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Site"
                    }
                  },
                  "next_cursor": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "description": "The `cursor` of the next page; absent (or null) on the last page."
                  }
                }
              },
              "SitePage": {
                "type": "object",
                "description": "A site's page in one answer.",
                "required": [
                  "site",
                  "servers",
                  "groups",
                  "devices"
                ],
                "properties": {
                  "site": {
                    "$ref": "#/components/schemas/Site"
                  },
                  "servers": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Server"
                    },
                    "description": "All its servers, by id."
                  },
                  "groups": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/DeviceGroup"
                    },
                    "description": "All its device groups, by name."
                  },
                  "devices": {
                    "$ref": "#/components/schemas/DevicePage",
                    "description": "The first 100 of its devices (gone ones included); the rest through `GET /v1/devices?site=...&cursor=...`."
                  }
                }
              },
              "GPU": {
                "type": "object",
                "description": "GPUs of one type on a server.",
                "required": [
                  "type",
                  "count"
                ],
                "properties": {
                  "type": {
                    "type": "string",
                    "description": "The GPU model, as the agent reports it."
                  },
                  "count": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How many of them."
                  }
                }
              },
              "Server": {
                "type": "object",
                "description": "An edge server, as its agent last described it.",
                "required": [
                  "id",
                  "site_id",
                  "name",
                  "agent_version",
                  "cpu_cores",
                  "memory_bytes",
                  "gpus",
                  "supports_pipelines",
                  "online"
                ],
                "properties": {
                  "id": {
                    "$ref": "#/components/schemas/Identifier",
                    "description": "Its agent's id."
                  },
                  "site_id": {
                    "$ref": "#/components/schemas/Identifier"
                  },
                  "name": {
                    "$ref": "#/components/schemas/Name"
                  },
                  "agent_version": {
                    "type": "string",
                    "description": "The agent's version."
                  },
                  "cpu_cores": {
                    "type": "number",
                    "minimum": 0
                  },
                  "memory_bytes": {
                    "type": "integer",
                    "format": "int64",
                    "minimum": 0
                  },
                  "gpus": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/GPU"
                    }
                  },
                  "supports_pipelines": {
                    "type": "boolean",
                    "description": "Whether its agent runs pipelines."
                  },
                  "online": {
                    "type": "boolean",
                    "description": "Whether its agent is connected."
                  },
                  "last_seen": {
                    "type": "string",
                    "format": "date-time",
                    "description": "When its agent was last seen; absent when never. ISO 8601 with milliseconds, UTC."
                  }
                }
              },
              "Device": {
                "type": "object",
                "description": "A device (a camera, say) on a server.",
                "required": [
                  "id",
                  "server_id",
                  "site_id",
                  "key",
                  "name",
                  "kind",
                  "enabled",
                  "gone",
                  "labels",
                  "reachable",
                  "supports_pipelines"
                ],
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The device's id in the registry."
                  },
                  "server_id": {
                    "$ref": "#/components/schemas/Identifier"
                  },
                  "site_id": {
                    "$ref": "#/components/schemas/Identifier"
                  },
                  "key": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 128,
                    "description": "Its id on its server (a serial, say), stable across hellos."
                  },
                  "name": {
                    "$ref": "#/components/schemas/Name"
                  },
                  "kind": {
                    "type": "string",
                    "description": "What it is, as the agent reports it."
                  },
                  "enabled": {
                    "type": "boolean",
                    "description": "Whether an operator has it in service."
                  },
                  "gone": {
                    "type": "boolean",
                    "description": "Its server's last hello no longer lists it; it is kept with its history."
                  },
                  "group_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "Its device group; absent when it is in none."
                  },
                  "labels": {
                    "type": "array",
                    "uniqueItems": true,
                    "items": {
                      "$ref": "#/components/schemas/Label"
                    },
                    "description": "Sorted, without duplicates."
                  },
                  "reachable": {
                    "type": "boolean",
                    "description": "Its server is online and it is not gone."
                  },
                  "supports_pipelines": {
                    "type": "boolean",
                    "description": "Whether its server's agent runs pipelines."
                  }
                }
              },
              "DevicePage": {
                "type": "object",
                "description": "A page of devices.",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Device"
                    }
                  },
                  "next_cursor": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "description": "The `cursor` of the next page; absent (or null) on the last page."
                  }
                }
              },
              "DeviceGroup": {
                "type": "object",
                "description": "A named group of devices in a site.",
                "required": [
                  "id",
                  "site_id",
                  "name"
                ],
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The group's id."
                  },
                  "site_id": {
                    "$ref": "#/components/schemas/Identifier"
                  },
                  "name": {
                    "$ref": "#/components/schemas/Name",
                    "description": "Unique in its site."
                  }
                }
              },
              "NewDeviceGroup": {
                "type": "object",
                "description": "A device group to add.",
                "required": [
                  "name"
                ],
                "properties": {
                  "name": {
                    "$ref": "#/components/schemas/Name",
                    "description": "Unique in the site."
                  }
                }
              },
              "DeviceGroupList": {
                "type": "object",
                "description": "All device groups of a site, by name, in one page.",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/DeviceGroup"
                    }
                  },
                  "next_cursor": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "description": "The `cursor` of the next page; absent (or null) on the last page."
                  }
                }
              },
              "ServerList": {
                "type": "object",
                "description": "The servers, by id, in one page.",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Server"
                    }
                  },
                  "next_cursor": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "description": "The `cursor` of the next page; absent (or null) on the last page."
                  }
                }
              },
              "DeviceUpdate": {
                "type": "object",
                "description": "An operator's change to a device; give at least one field. Absent fields are kept.",
                "properties": {
                  "name": {
                    "$ref": "#/components/schemas/Name"
                  },
                  "enabled": {
                    "type": "boolean"
                  },
                  "group_id": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "format": "uuid",
                    "description": "A device group of the device's site, or null to take the device out of its group."
                  },
                  "labels": {
                    "type": "array",
                    "maxItems": 32,
                    "items": {
                      "$ref": "#/components/schemas/Label"
                    },
                    "description": "Replaces the labels. At most 32 labels; duplicates are dropped and the rest sorted."
                  }
                },
                "anyOf": [
                  {
                    "required": [
                      "name"
                    ]
                  },
                  {
                    "required": [
                      "enabled"
                    ]
                  },
                  {
                    "required": [
                      "group_id"
                    ]
                  },
                  {
                    "required": [
                      "labels"
                    ]
                  }
                ]
              }
            }
          }
        }
        """#
}
