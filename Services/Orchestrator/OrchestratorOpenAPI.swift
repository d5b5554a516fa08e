import Foundation
import Hummingbird

/// The OpenAPI 3.1 document of the orchestrator's REST API, served at `GET /openapi.json`.
/// It is kept as a Swift string so that the executable carries it without a resource bundle;
/// `OrchestratorAPIDocumentTests` fails when a route of `OrchestratorAPI.routes` is missing here,
/// when a path here is not served, or when the document is not valid OpenAPI 3.1.
enum OrchestratorOpenAPI {
    static let json = Data(text.utf8)

    static func response() -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: json)))
    }

    static let text = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "ModelFleet orchestrator",
            "version": "0.1.0",
            "description": "The orchestrator assigns inference pipelines to devices, one device or many at a time, and tracks each change until the device's edge server has applied it. Each change is an operation, recorded for the audit trail with its devices; the actor is `local` until ModelFleet has users. **Previews and confirmation.** Every route that changes pipelines takes `dry_run` (a body field, or a query parameter on `DELETE`): `dry_run: true` answers 200 with the Preview (each device's pipelines before and after, the devices skipped and why, the offline sites) and writes nothing. An operation on many devices (`POST /v1/assignments`, `POST /v1/settings`, revert, retry) should be previewed so and is applied only with `confirm: true` (otherwise 400 on `confirm`); devices it cannot change are skipped with their reason. On a single device (`/v1/devices/{device_id}/pipelines...`) no confirmation is needed, and a device that cannot take pipelines (gone, disabled, its server without pipeline support) is a 409 `device_unavailable`. An operation that would change no device is a 409 `no_change`; one whose devices another operation changed between its plan and its commit is a 409 `changed_meanwhile` (try again). **Offline sites.** A change touching a site with no edge server online is refused with 409 `site_offline` unless `allow_offline` is true; the devices then get their pipelines when their servers come back (desired states are retained per server). **Progress.** An accepted operation answers 202; each of its devices goes `pending` (committed) → `delivered` (the server's desired state was published) → `applied` (the server reported it running) | `failed` (the server reported a pipeline failed; `reason` says which and why) | `timed_out` (not applied within the watchdog). The watchdog, `watchdog_seconds` (1 to 86400, default 120), starts when the operation is committed for devices whose server is online, and when the server comes online for the others; a late report still settles a timed-out device. **Revert and retry.** `POST /v1/operations/{operation_id}/revert` puts back each device's previous pipelines (what it ran before that operation); `POST /v1/operations/{operation_id}/retry` sends the operation's change again to its `failed` and `timed_out` devices. Both are new operations on many devices. **Pipelines.** A pipeline is an ordered chain of 1 to 16 stages, each a model version of the registry (it must exist and be `active`: 422 `unknown_model_version`, `model_version_deprecated`) with settings merged over the version's defaults and optional pre- and post-processors; a device runs up to 64 pipelines. Pipelines are addressed by their position on the device, from 0. Every error is answered with the Error body, `{\"error\": {\"code\": \"...\", \"message\": \"...\", \"field\": \"...\"}}`, `field` naming the field at fault when there is one (`pipelines[1].stages[0].version`). Lists answer `{\"items\": [...], \"next_cursor\": \"...\"}`; `next_cursor` is absent on the last page. Dates are ISO 8601 with milliseconds, in UTC. The operations endpoints `GET /health`, `/ready` and `/metrics` are not part of this document."
          },
          "servers": [
            {
              "url": "http://127.0.0.1:8082"
            }
          ],
          "tags": [
            {
              "name": "Device pipelines",
              "description": "The pipelines of one device: each change is an operation on that device."
            },
            {
              "name": "Fleet",
              "description": "Operations on many devices, previewed and confirmed."
            },
            {
              "name": "Operations",
              "description": "Operations: their progress, revert and retry."
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
            "/v1/devices/{device_id}/pipelines": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/DeviceID"
                }
              ],
              "get": {
                "operationId": "getDevicePipelines",
                "tags": [
                  "Device pipelines"
                ],
                "summary": "The pipelines a device should run now, in order, with their revision.",
                "responses": {
                  "200": {
                    "description": "The device's pipelines; `revision` 0 and no pipelines when it was never assigned any.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/DevicePipelines"
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
                    "description": "The registry has no device with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
                "operationId": "addDevicePipeline",
                "tags": [
                  "Device pipelines"
                ],
                "summary": "Adds a pipeline after the device's others.",
                "requestBody": {
                  "required": true,
                  "description": "The pipeline, and how to carry out the operation.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/PipelineBody"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "The body or a field is invalid (`pipeline.stages`, `pipeline.stages[0].settings.nms_threshold`, `watchdog_seconds`), or `device_id` is not a UUID; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "The registry has no device with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`device_unavailable`: the device cannot take pipelines, or already runs 64; `site_offline`: its site is offline and `allow_offline` is not set; `changed_meanwhile`: another operation changed the device meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "413": {
                    "description": "The body is larger than 1 MiB (`too_large`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "422": {
                    "description": "A stage's model version is not in the registry (`unknown_model_version`) or is deprecated (`model_version_deprecated`); `field` names the stage's `version`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/devices/{device_id}/pipelines/{index}": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/DeviceID"
                },
                {
                  "$ref": "#/components/parameters/PipelineIndex"
                }
              ],
              "put": {
                "operationId": "replaceDevicePipeline",
                "tags": [
                  "Device pipelines"
                ],
                "summary": "Replaces the device's pipeline at `index` with another (a new pipeline id).",
                "requestBody": {
                  "required": true,
                  "description": "The new pipeline, and how to carry out the operation.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/PipelineBody"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "The body or a field is invalid, or `device_id` or `index` is not valid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "The registry has no device with this id, or the device has no pipeline at `index` (`field` is `index`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`device_unavailable`: the device cannot take pipelines; `site_offline`: its site is offline and `allow_offline` is not set; `changed_meanwhile`: another operation changed the device meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "413": {
                    "description": "The body is larger than 1 MiB (`too_large`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "422": {
                    "description": "A stage's model version is not in the registry (`unknown_model_version`) or is deprecated (`model_version_deprecated`); `field` names the stage's `version`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
                "operationId": "removeDevicePipeline",
                "tags": [
                  "Device pipelines"
                ],
                "summary": "Removes the device's pipeline at `index`; the pipelines after it move up one place.",
                "parameters": [
                  {
                    "name": "dry_run",
                    "in": "query",
                    "required": false,
                    "description": "Plan only: answer the preview (200) and write nothing.",
                    "schema": {
                      "type": "boolean",
                      "default": false
                    }
                  },
                  {
                    "name": "allow_offline",
                    "in": "query",
                    "required": false,
                    "description": "Accept a device whose site is offline: it gets its pipelines when its server comes back.",
                    "schema": {
                      "type": "boolean",
                      "default": false
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`device_id`, `index`, `dry_run` or `allow_offline` is invalid; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "The registry has no device with this id, or the device has no pipeline at `index` (`field` is `index`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`device_unavailable`: the device cannot take pipelines; `site_offline`: its site is offline and `allow_offline` is not set; `changed_meanwhile`: another operation changed the device meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/devices/{device_id}/pipelines/{index}/stages/{stage}": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/DeviceID"
                },
                {
                  "$ref": "#/components/parameters/PipelineIndex"
                },
                {
                  "$ref": "#/components/parameters/StageIndex"
                }
              ],
              "patch": {
                "operationId": "updateDeviceStageSettings",
                "tags": [
                  "Device pipelines"
                ],
                "summary": "Merges settings into one stage of one of the device's pipelines (the pipeline keeps its id).",
                "requestBody": {
                  "required": true,
                  "description": "The settings to merge (each key replaces the stage's), and how to carry out the operation.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/StageSettingsBody"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "The body or a field is invalid (`settings.confidence_threshold` after the merge, `watchdog_seconds`), or a path parameter is; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "The registry has no device with this id, the device has no pipeline at `index` (`field` is `pipeline`), or the pipeline has no such stage (`field` is `stage`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`no_change`: the stage has these settings already; `device_unavailable`: the device cannot take pipelines; `site_offline`: its site is offline and `allow_offline` is not set; `changed_meanwhile`: another operation changed the device meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "413": {
                    "description": "The body is larger than 1 MiB (`too_large`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/devices/{device_id}/pipelines/history": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/DeviceID"
                }
              ],
              "get": {
                "operationId": "getDevicePipelineHistory",
                "tags": [
                  "Device pipelines"
                ],
                "summary": "Every revision of the device's pipelines, newest first, with the operation that made it.",
                "responses": {
                  "200": {
                    "description": "The device's whole history in one page (no `next_cursor`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/HistoryPage"
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
                    "description": "The registry has no device with this id.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/assignments": {
              "post": {
                "operationId": "assignPipelines",
                "tags": [
                  "Fleet"
                ],
                "summary": "Replaces all pipelines of every chosen device with the given list (an empty list removes them all).",
                "description": "Preview with `dry_run: true`, then apply with `confirm: true`. Devices that cannot take pipelines, and devices that already run exactly this list, are skipped.",
                "requestBody": {
                  "required": true,
                  "description": "The devices, their pipelines, and how to carry out the operation.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/AssignmentBody"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "The body or a field is invalid (`targets` empty, more than 64 `pipelines`, `pipelines[0].stages`, `watchdog_seconds`), or `confirm` is not true when applying; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "A device of `targets.device_ids` is not in the registry (when only `device_ids` is given; `field` is `targets.device_ids`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`site_offline`: a device to change is at an offline site and `allow_offline` is not set; `no_change`: no device would change (all skipped); `changed_meanwhile`: another operation changed one of the devices meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "413": {
                    "description": "The body is larger than 1 MiB (`too_large`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "422": {
                    "description": "A stage's model version is not in the registry (`unknown_model_version`) or is deprecated (`model_version_deprecated`); `field` names the stage's `version`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/settings": {
              "post": {
                "operationId": "updateSettingsOfMany",
                "tags": [
                  "Fleet"
                ],
                "summary": "Merges settings into one stage of the pipeline of this name on every chosen device.",
                "description": "Preview with `dry_run: true`, then apply with `confirm: true`. Devices without a pipeline of this name or without the stage, devices that cannot take pipelines, and devices whose stage has these settings already are skipped.",
                "requestBody": {
                  "required": true,
                  "description": "The devices, the pipeline and stage, the settings, and how to carry out the operation.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/BulkSettingsBody"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "The body or a field is invalid (`targets` empty, `stage` negative, `settings.nms_threshold` after the merge, `watchdog_seconds`), or `confirm` is not true when applying; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "A device of `targets.device_ids` is not in the registry (when only `device_ids` is given; `field` is `targets.device_ids`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`site_offline`: a device to change is at an offline site and `allow_offline` is not set; `no_change`: no device would change (all skipped); `changed_meanwhile`: another operation changed one of the devices meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "413": {
                    "description": "The body is larger than 1 MiB (`too_large`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/operations": {
              "get": {
                "operationId": "listOperations",
                "tags": [
                  "Operations"
                ],
                "summary": "Lists operations, newest first, one page at a time, with their devices' counts by status.",
                "parameters": [
                  {
                    "name": "limit",
                    "in": "query",
                    "required": false,
                    "description": "How many items a page holds at most.",
                    "schema": {
                      "type": "integer",
                      "minimum": 1,
                      "maximum": 500,
                      "default": 50
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
                    "description": "A page of operations.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/OperationPage"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`limit` or `cursor` is invalid; `field` names it.",
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
            "/v1/operations/{operation_id}": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/OperationID"
                }
              ],
              "get": {
                "operationId": "getOperation",
                "tags": [
                  "Operations"
                ],
                "summary": "An operation with each of its devices and where it stands.",
                "parameters": [
                  {
                    "name": "status",
                    "in": "query",
                    "required": false,
                    "description": "Only the devices in this status.",
                    "schema": {
                      "$ref": "#/components/schemas/DeviceStatus"
                    }
                  }
                ],
                "responses": {
                  "200": {
                    "description": "The operation and its devices, ordered by site, server and device.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/OperationDetail"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`operation_id` is not a UUID, or `status` is not a device status; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no operation with this id.",
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
            "/v1/operations/{operation_id}/revert": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/OperationID"
                }
              ],
              "post": {
                "operationId": "revertOperation",
                "tags": [
                  "Operations"
                ],
                "summary": "Puts back on each device of the operation the pipelines it had before it, as a new operation (kind `revert`).",
                "description": "An operation on many devices: preview with `dry_run: true`, then apply with `confirm: true`. Devices that run their earlier pipelines already, or cannot take pipelines any more, are skipped.",
                "requestBody": {
                  "required": false,
                  "description": "How to carry out the revert; may be absent (the same as `{}`). `{\"dry_run\": true}` previews it, `{\"confirm\": true}` applies it.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/Options"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`operation_id` is not a UUID, a field is invalid (`watchdog_seconds`), or `confirm` is not true when applying; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no operation with this id, or one of its devices is no longer in the registry (`field` is `targets.device_ids`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`site_offline`: a device to change is at an offline site and `allow_offline` is not set; `no_change`: no device would change (all skipped); `changed_meanwhile`: another operation changed one of the devices meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
            "/v1/operations/{operation_id}/retry": {
              "parameters": [
                {
                  "$ref": "#/components/parameters/OperationID"
                }
              ],
              "post": {
                "operationId": "retryOperation",
                "tags": [
                  "Operations"
                ],
                "summary": "Sends the operation's change again to its devices that failed or timed out, as a new operation (kind `retry`).",
                "description": "An operation on many devices: preview with `dry_run: true`, then apply with `confirm: true`. Devices that cannot take pipelines any more are skipped.",
                "requestBody": {
                  "required": false,
                  "description": "How to carry out the retry; may be absent (the same as `{}`). `{\"dry_run\": true}` previews it, `{\"confirm\": true}` applies it.",
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/Options"
                      }
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "With `dry_run: true`: the preview of what would change; nothing was written.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Preview"
                        }
                      }
                    }
                  },
                  "202": {
                    "description": "Committed: the operation, its devices `pending`; follow it with `GET /v1/operations/{operation_id}`.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Accepted"
                        }
                      }
                    }
                  },
                  "400": {
                    "description": "`operation_id` is not a UUID, a field is invalid (`watchdog_seconds`), or `confirm` is not true when applying; `field` names it.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "There is no operation with this id, or one of its devices is no longer in the registry (`field` is `targets.device_ids`).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "`nothing_to_retry`: no device of the operation failed or timed out; `site_offline`: a device to change is at an offline site and `allow_offline` is not set; `no_change`: no device would change (all skipped); `changed_meanwhile`: another operation changed one of the devices meanwhile.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Error"
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "The registry did not answer in time (`registry_unavailable`); nothing was changed, try again.",
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
                        "description": "What went wrong, for programs: `invalid_field` (400), `not_found` (404), `too_large` (413), `site_offline`, `device_unavailable`, `no_change`, `changed_meanwhile`, `nothing_to_retry` (409), `unknown_model_version`, `model_version_deprecated` (422), `registry_unavailable` (503), `internal` (500), or `http_<status>` for other HTTP errors.",
                        "examples": [
                          "invalid_field",
                          "site_offline",
                          "unknown_model_version"
                        ]
                      },
                      "message": {
                        "type": "string",
                        "description": "What went wrong, for people."
                      },
                      "field": {
                        "type": "string",
                        "description": "The request field, path or query parameter at fault (`pipelines[1].stages[0].version`, `allow_offline`, `confirm`); absent when no single field is."
                      }
                    }
                  }
                }
              },
              "JSONValue": {
                "description": "Any JSON value (free-form)."
              },
              "Settings": {
                "type": "object",
                "description": "A stage's inference settings. The keys below are checked; any other key is passed to the runtime as given.",
                "properties": {
                  "confidence_threshold": {
                    "type": "number",
                    "description": "The minimum confidence of a result, 0 to 1.",
                    "minimum": 0,
                    "maximum": 1
                  },
                  "nms_threshold": {
                    "type": "number",
                    "description": "The non-maximum suppression threshold, 0 to 1.",
                    "minimum": 0,
                    "maximum": 1
                  },
                  "iou_threshold": {
                    "type": "number",
                    "description": "The intersection-over-union threshold, 0 to 1.",
                    "minimum": 0,
                    "maximum": 1
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
                    "description": "The most results per frame.",
                    "minimum": 1
                  }
                },
                "additionalProperties": {
                  "$ref": "#/components/schemas/JSONValue"
                }
              },
              "Processor": {
                "type": "object",
                "description": "A pre- or post-processor of a stage: a name the runtime knows (`resize`, `nms`, `tracker`) and its settings.",
                "required": [
                  "name",
                  "settings"
                ],
                "properties": {
                  "name": {
                    "type": "string",
                    "description": "1 to 64 characters.",
                    "minLength": 1,
                    "maxLength": 64,
                    "examples": [
                      "resize"
                    ]
                  },
                  "settings": {
                    "type": "object",
                    "description": "The processor's settings (`{}` for none).",
                    "additionalProperties": {
                      "$ref": "#/components/schemas/JSONValue"
                    }
                  }
                }
              },
              "StageRequest": {
                "type": "object",
                "description": "A stage as an operator writes it: a model version of the registry and how to run it. The artifact and its checksum come from the registry.",
                "required": [
                  "model_id",
                  "version"
                ],
                "properties": {
                  "model_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The model's id in the registry."
                  },
                  "version": {
                    "type": "string",
                    "description": "The model's version; it must exist and be `active`.",
                    "minLength": 1,
                    "maxLength": 64,
                    "examples": [
                      "1.2.0"
                    ]
                  },
                  "settings": {
                    "allOf": [
                      {
                        "$ref": "#/components/schemas/Settings"
                      }
                    ],
                    "description": "Merged over the version's default settings."
                  },
                  "pre_processors": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                      "$ref": "#/components/schemas/Processor"
                    },
                    "description": "Run before the model, in order; at most 16."
                  },
                  "post_processors": {
                    "type": "array",
                    "maxItems": 16,
                    "items": {
                      "$ref": "#/components/schemas/Processor"
                    },
                    "description": "Run after the model, in order; at most 16."
                  }
                }
              },
              "PipelineRequest": {
                "type": "object",
                "description": "A pipeline as an operator writes it. It gets a new id when an operation creates it.",
                "required": [
                  "name",
                  "stages"
                ],
                "properties": {
                  "name": {
                    "type": "string",
                    "description": "1 to 128 characters.",
                    "minLength": 1,
                    "maxLength": 128,
                    "examples": [
                      "entrance-people"
                    ]
                  },
                  "stages": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "items": {
                      "$ref": "#/components/schemas/StageRequest"
                    },
                    "description": "The models, in the order frames go through them; 1 to 16."
                  }
                }
              },
              "DeviceTargets": {
                "type": "object",
                "description": "Which devices an operation on many devices takes: `device_ids`, or a selector (`site_ids`, `group_ids`, `labels`: every field given narrows the selection), or both (the union of the two). At least one list must be non-empty.",
                "properties": {
                  "device_ids": {
                    "type": "array",
                    "items": {
                      "type": "string",
                      "format": "uuid"
                    },
                    "description": "These devices."
                  },
                  "site_ids": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    },
                    "description": "The devices at any of these sites."
                  },
                  "group_ids": {
                    "type": "array",
                    "items": {
                      "type": "string",
                      "format": "uuid"
                    },
                    "description": "The devices in any of these device groups."
                  },
                  "labels": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    },
                    "description": "The devices that carry every one of these labels."
                  }
                },
                "anyOf": [
                  {
                    "required": [
                      "device_ids"
                    ],
                    "properties": {
                      "device_ids": {
                        "minItems": 1
                      }
                    }
                  },
                  {
                    "required": [
                      "site_ids"
                    ],
                    "properties": {
                      "site_ids": {
                        "minItems": 1
                      }
                    }
                  },
                  {
                    "required": [
                      "group_ids"
                    ],
                    "properties": {
                      "group_ids": {
                        "minItems": 1
                      }
                    }
                  },
                  {
                    "required": [
                      "labels"
                    ],
                    "properties": {
                      "labels": {
                        "minItems": 1
                      }
                    }
                  }
                ]
              },
              "Options": {
                "type": "object",
                "description": "How an operation is carried out; every field optional. These fields sit at the top level of each request body, beside the operation's own fields.",
                "properties": {
                  "dry_run": {
                    "type": "boolean",
                    "description": "Plan only: answer the Preview (200) and write nothing.",
                    "default": false
                  },
                  "confirm": {
                    "type": "boolean",
                    "description": "Required (true) to apply an operation on many devices, after previewing it with `dry_run`; ignored on a single device.",
                    "default": false
                  },
                  "allow_offline": {
                    "type": "boolean",
                    "description": "Accept devices of offline sites: they get their pipelines when their servers come back. Without it such a change is a 409 `site_offline`.",
                    "default": false
                  },
                  "watchdog_seconds": {
                    "type": "integer",
                    "description": "Seconds each device has to apply the change once its server is online; then it is `timed_out`.",
                    "minimum": 1,
                    "maximum": 86400,
                    "default": 120
                  }
                }
              },
              "PipelineBody": {
                "description": "A pipeline for one device (`POST /v1/devices/{device_id}/pipelines`, `PUT .../pipelines/{index}`), with the Options fields.",
                "allOf": [
                  {
                    "$ref": "#/components/schemas/Options"
                  },
                  {
                    "type": "object",
                    "required": [
                      "pipeline"
                    ],
                    "properties": {
                      "pipeline": {
                        "$ref": "#/components/schemas/PipelineRequest"
                      }
                    }
                  }
                ],
                "examples": [
                  {
                    "pipeline": {
                      "name": "entrance-people",
                      "stages": [
                        {
                          "model_id": "7d3f6c1e-2b4a-4f0e-9a51-0c8e5d2b9f10",
                          "version": "1.2.0",
                          "settings": {
                            "confidence_threshold": 0.5
                          }
                        }
                      ]
                    },
                    "dry_run": true
                  }
                ]
              },
              "StageSettingsBody": {
                "description": "Settings to merge into one stage of one device's pipeline, with the Options fields.",
                "allOf": [
                  {
                    "$ref": "#/components/schemas/Options"
                  },
                  {
                    "type": "object",
                    "required": [
                      "settings"
                    ],
                    "properties": {
                      "settings": {
                        "allOf": [
                          {
                            "$ref": "#/components/schemas/Settings"
                          }
                        ],
                        "description": "Each key replaces the stage's; the result is checked."
                      }
                    }
                  }
                ]
              },
              "AssignmentBody": {
                "description": "Pipelines for many devices, with the Options fields: `{\"targets\", \"pipelines\", \"dry_run\", \"confirm\", \"allow_offline\", \"watchdog_seconds\"}`.",
                "allOf": [
                  {
                    "$ref": "#/components/schemas/Options"
                  },
                  {
                    "type": "object",
                    "required": [
                      "targets",
                      "pipelines"
                    ],
                    "properties": {
                      "targets": {
                        "$ref": "#/components/schemas/DeviceTargets"
                      },
                      "pipelines": {
                        "type": "array",
                        "maxItems": 64,
                        "items": {
                          "$ref": "#/components/schemas/PipelineRequest"
                        },
                        "description": "Every pipeline each device will run, in order (each device's others are removed); at most 64."
                      }
                    }
                  }
                ],
                "examples": [
                  {
                    "targets": {
                      "site_ids": [
                        "lyon-1"
                      ],
                      "labels": [
                        "entrance"
                      ]
                    },
                    "pipelines": [
                      {
                        "name": "entrance-people",
                        "stages": [
                          {
                            "model_id": "7d3f6c1e-2b4a-4f0e-9a51-0c8e5d2b9f10",
                            "version": "1.2.0"
                          }
                        ]
                      }
                    ],
                    "dry_run": true
                  }
                ]
              },
              "BulkSettingsBody": {
                "description": "Settings to merge into one stage of a named pipeline on many devices, with the Options fields.",
                "allOf": [
                  {
                    "$ref": "#/components/schemas/Options"
                  },
                  {
                    "type": "object",
                    "required": [
                      "targets",
                      "pipeline_name",
                      "stage",
                      "settings"
                    ],
                    "properties": {
                      "targets": {
                        "$ref": "#/components/schemas/DeviceTargets"
                      },
                      "pipeline_name": {
                        "type": "string",
                        "description": "The name of the pipeline to change on each device (its first of this name)."
                      },
                      "stage": {
                        "type": "integer",
                        "description": "The stage's position in the pipeline, from 0.",
                        "minimum": 0
                      },
                      "settings": {
                        "allOf": [
                          {
                            "$ref": "#/components/schemas/Settings"
                          }
                        ],
                        "description": "Each key replaces the stage's; the result is checked."
                      }
                    }
                  }
                ]
              },
              "Stage": {
                "type": "object",
                "description": "One model of a pipeline as the device's server runs it, with where to fetch it and how to run it.",
                "required": [
                  "model_id",
                  "model_name",
                  "version",
                  "artifact_uri",
                  "sha256",
                  "settings",
                  "pre_processors",
                  "post_processors"
                ],
                "properties": {
                  "model_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "model_name": {
                    "type": "string"
                  },
                  "version": {
                    "type": "string"
                  },
                  "artifact_uri": {
                    "type": "string",
                    "description": "Where the server fetches the model's weights."
                  },
                  "sha256": {
                    "type": "string",
                    "description": "The artifact's SHA-256, in hex.",
                    "pattern": "^[0-9a-f]{64}$"
                  },
                  "settings": {
                    "allOf": [
                      {
                        "$ref": "#/components/schemas/Settings"
                      }
                    ],
                    "description": "The version's default settings with the operator's merged over them."
                  },
                  "pre_processors": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Processor"
                    }
                  },
                  "post_processors": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Processor"
                    }
                  }
                }
              },
              "Pipeline": {
                "type": "object",
                "description": "A pipeline of a device, as it is sent to its server.",
                "required": [
                  "id",
                  "name",
                  "stages"
                ],
                "properties": {
                  "id": {
                    "type": "string",
                    "description": "Stable while only its settings change; a replaced pipeline gets a new one."
                  },
                  "name": {
                    "type": "string"
                  },
                  "stages": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Stage"
                    }
                  }
                }
              },
              "DevicePipelines": {
                "type": "object",
                "required": [
                  "device_id",
                  "revision",
                  "pipelines"
                ],
                "properties": {
                  "device_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "revision": {
                    "type": "integer",
                    "description": "How many operations changed the device's pipelines; 0 when none did.",
                    "minimum": 0
                  },
                  "pipelines": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Pipeline"
                    },
                    "description": "In order; pipelines are addressed by their position, from 0."
                  }
                }
              },
              "HistoryEntry": {
                "type": "object",
                "description": "One revision of a device's pipelines.",
                "required": [
                  "revision",
                  "pipelines",
                  "operation_id",
                  "created_at"
                ],
                "properties": {
                  "revision": {
                    "type": "integer",
                    "minimum": 1
                  },
                  "pipelines": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Pipeline"
                    }
                  },
                  "operation_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The operation that made this revision."
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO 8601 with milliseconds, in UTC."
                  }
                }
              },
              "HistoryPage": {
                "type": "object",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/HistoryEntry"
                    },
                    "description": "Newest first."
                  },
                  "next_cursor": {
                    "type": "string",
                    "description": "Absent: the history comes in one page."
                  }
                }
              },
              "OperationKind": {
                "type": "string",
                "enum": [
                  "assign",
                  "add_pipeline",
                  "replace_pipeline",
                  "remove_pipeline",
                  "update_settings",
                  "revert",
                  "retry"
                ],
                "description": "What an operation did: `assign` (`POST /v1/assignments`), `add_pipeline`, `replace_pipeline`, `remove_pipeline`, `update_settings` (on one device or many), `revert`, `retry`."
              },
              "DeviceStatus": {
                "type": "string",
                "enum": [
                  "pending",
                  "delivered",
                  "applied",
                  "failed",
                  "timed_out"
                ],
                "description": "Where a device of an operation stands: `pending` (committed, waiting to be published), `delivered` (published to its server), then `applied` (its server reported it running), `failed` (a pipeline failed; see `reason`) or `timed_out` (not applied within the watchdog; a late report still settles it)."
              },
              "OperationSummary": {
                "type": "object",
                "required": [
                  "id",
                  "kind",
                  "actor",
                  "created_at",
                  "watchdog_seconds",
                  "counts",
                  "devices",
                  "finished"
                ],
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "kind": {
                    "$ref": "#/components/schemas/OperationKind"
                  },
                  "actor": {
                    "type": "string",
                    "description": "Who asked for it: `local` until ModelFleet has users.",
                    "examples": [
                      "local"
                    ]
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO 8601 with milliseconds, in UTC."
                  },
                  "reverts": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The operation this one reverts (kind `revert`); absent otherwise."
                  },
                  "retries": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The operation this one retries (kind `retry`); absent otherwise."
                  },
                  "watchdog_seconds": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 86400
                  },
                  "counts": {
                    "type": "object",
                    "description": "The operation's devices by status.",
                    "required": [
                      "pending",
                      "delivered",
                      "applied",
                      "failed",
                      "timed_out"
                    ],
                    "properties": {
                      "pending": {
                        "type": "integer",
                        "minimum": 0
                      },
                      "delivered": {
                        "type": "integer",
                        "minimum": 0
                      },
                      "applied": {
                        "type": "integer",
                        "minimum": 0
                      },
                      "failed": {
                        "type": "integer",
                        "minimum": 0
                      },
                      "timed_out": {
                        "type": "integer",
                        "minimum": 0
                      }
                    }
                  },
                  "devices": {
                    "type": "integer",
                    "description": "How many devices the operation changes.",
                    "minimum": 0
                  },
                  "finished": {
                    "type": "boolean",
                    "description": "Every device settled: applied, failed or timed out."
                  }
                }
              },
              "OperationDevice": {
                "type": "object",
                "description": "One device of an operation.",
                "required": [
                  "device_id",
                  "device_name",
                  "site_id",
                  "server_id",
                  "generation",
                  "status",
                  "updated_at"
                ],
                "properties": {
                  "device_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "device_name": {
                    "type": "string"
                  },
                  "site_id": {
                    "type": "string"
                  },
                  "server_id": {
                    "type": "string"
                  },
                  "generation": {
                    "type": "integer",
                    "description": "The generation of the server's desired state that carries the change.",
                    "format": "int64",
                    "minimum": 1
                  },
                  "status": {
                    "$ref": "#/components/schemas/DeviceStatus"
                  },
                  "reason": {
                    "type": "string",
                    "description": "Why it failed or timed out; absent otherwise."
                  },
                  "updated_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "ISO 8601 with milliseconds, in UTC."
                  }
                }
              },
              "OperationDetail": {
                "type": "object",
                "required": [
                  "operation",
                  "devices"
                ],
                "properties": {
                  "operation": {
                    "$ref": "#/components/schemas/OperationSummary"
                  },
                  "devices": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/OperationDevice"
                    }
                  }
                }
              },
              "OperationPage": {
                "type": "object",
                "required": [
                  "items"
                ],
                "properties": {
                  "items": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/OperationSummary"
                    },
                    "description": "Newest first."
                  },
                  "next_cursor": {
                    "type": "string",
                    "description": "Pass as `cursor` for the next page; absent on the last page."
                  }
                }
              },
              "Change": {
                "type": "object",
                "description": "One device's change in a preview.",
                "required": [
                  "device_id",
                  "device_name",
                  "site_id",
                  "server_id",
                  "reachable",
                  "before",
                  "after"
                ],
                "properties": {
                  "device_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "device_name": {
                    "type": "string"
                  },
                  "site_id": {
                    "type": "string"
                  },
                  "server_id": {
                    "type": "string"
                  },
                  "reachable": {
                    "type": "boolean",
                    "description": "Its server is online now."
                  },
                  "before": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Pipeline"
                    },
                    "description": "The pipelines it runs now."
                  },
                  "after": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Pipeline"
                    },
                    "description": "The pipelines it would run."
                  }
                }
              },
              "SkippedDevice": {
                "type": "object",
                "description": "A device an operation on many devices leaves alone, and why.",
                "required": [
                  "device_id",
                  "reason"
                ],
                "properties": {
                  "device_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "device_name": {
                    "type": "string"
                  },
                  "reason": {
                    "type": "string",
                    "examples": [
                      "disabled",
                      "already runs this",
                      "runs no pipeline named 'entrance-people'"
                    ]
                  }
                }
              },
              "Preview": {
                "type": "object",
                "description": "What an operation would do; nothing was written.",
                "required": [
                  "dry_run",
                  "kind",
                  "changes",
                  "skipped",
                  "offline_sites"
                ],
                "properties": {
                  "dry_run": {
                    "const": true
                  },
                  "kind": {
                    "$ref": "#/components/schemas/OperationKind"
                  },
                  "changes": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/Change"
                    }
                  },
                  "skipped": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/SkippedDevice"
                    }
                  },
                  "offline_sites": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    },
                    "description": "The sites of the changes with no server online: applying needs `allow_offline`."
                  }
                }
              },
              "Accepted": {
                "type": "object",
                "description": "A committed operation.",
                "required": [
                  "operation",
                  "skipped"
                ],
                "properties": {
                  "operation": {
                    "$ref": "#/components/schemas/OperationSummary"
                  },
                  "skipped": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/SkippedDevice"
                    }
                  }
                }
              }
            },
            "parameters": {
              "DeviceID": {
                "name": "device_id",
                "in": "path",
                "required": true,
                "description": "The device's id in the registry.",
                "schema": {
                  "type": "string",
                  "format": "uuid"
                }
              },
              "PipelineIndex": {
                "name": "index",
                "in": "path",
                "required": true,
                "description": "The pipeline's position on the device, from 0.",
                "schema": {
                  "type": "integer",
                  "minimum": 0
                }
              },
              "StageIndex": {
                "name": "stage",
                "in": "path",
                "required": true,
                "description": "The stage's position in the pipeline, from 0.",
                "schema": {
                  "type": "integer",
                  "minimum": 0
                }
              },
              "OperationID": {
                "name": "operation_id",
                "in": "path",
                "required": true,
                "description": "The operation's id.",
                "schema": {
                  "type": "string",
                  "format": "uuid"
                }
              }
            }
          }
        }
        """#
}
