// @ts-check
// GENERATED from qwen_daemon/contract/ by `python -m qwen_daemon.contract.js`: do not edit;
// change the contract and regenerate (tests/test_contract.py fails while this file is stale).

/** Every session state, by name. */
export const SESSION_STATE = Object.freeze({
  STARTING: "starting",
  IDLE: "idle",
  RUNNING: "running",
  AWAITING_PERMISSION: "awaiting_permission",
  CLOSED: "closed",
  FAILED: "failed",
});
/** Every session state. */
export const SESSION_STATES = Object.freeze(["starting", "idle", "running", "awaiting_permission", "closed", "failed"]);
/** A turn is under way: a prompt is refused and a cancel has something to stop. */
export const BUSY_STATES = Object.freeze(["running", "awaiting_permission"]);
/** The session counts against the limit and keeps its agent. */
export const OPEN_STATES = Object.freeze(["starting", "idle", "running", "awaiting_permission"]);
/** Every event type, by name. */
export const EVENT = Object.freeze({
  USER_MESSAGE: "user_message",
  AGENT_MESSAGE_CHUNK: "agent_message_chunk",
  AGENT_THOUGHT_CHUNK: "agent_thought_chunk",
  USER_MESSAGE_CHUNK: "user_message_chunk",
  TOOL_CALL: "tool_call",
  TOOL_CALL_UPDATE: "tool_call_update",
  PLAN: "plan",
  PERMISSION_REQUEST: "permission_request",
  PERMISSION_RESOLVED: "permission_resolved",
  TURN_STARTED: "turn_started",
  TURN_ENDED: "turn_ended",
  STATE: "state",
  ERROR: "error",
  SESSION_UPDATED: "session_updated",
  MODE_CHANGED: "mode_changed",
  COMMANDS_CHANGED: "commands_changed",
  CONFIG_CHANGED: "config_changed",
  SESSION_INFO: "session_info",
  USAGE: "usage",
  AGENT_UPDATE: "agent_update",
});
/** Every event type. */
export const EVENT_TYPES = Object.freeze(["user_message", "agent_message_chunk", "agent_thought_chunk", "user_message_chunk", "tool_call", "tool_call_update", "plan", "permission_request", "permission_resolved", "turn_started", "turn_ended", "state", "error", "session_updated", "mode_changed", "commands_changed", "config_changed", "session_info", "usage", "agent_update"]);

/**
 * @typedef {object} UserMessage
 * @property {string} text
 * @property {string} prompt_id
 */
/**
 * A piece of content (ACP ContentBlock, translated): text, image, audio or a resource.
 * @typedef {object} ContentBlock
 * @property {string} type
 * @property {string} [text]
 * @property {string} [mime_type]
 * @property {string} [data]
 * @property {string} [uri]
 * @property {string} [name]
 * @property {string} [title]
 * @property {string} [description]
 * @property {number} [size]
 * @property {Record<string, any>} [resource]
 * @property {Record<string, any>} [annotations]
 * @property {Record<string, any>} [meta]
 */
/**
 * A piece of the agent's reply or thinking (or, replayed, the user's); ``content`` when it is not plain text; ``message_id`` groups the chunks of one message when the agent says.
 * @typedef {object} MessageChunk
 * @property {string} text
 * @property {ContentBlock} [content]
 * @property {(string|null)} [message_id]
 * @property {Record<string, any>} [meta]
 */
/**
 * What a tool call shows: ``content`` (a block), ``diff`` (path, old/new text) or ``terminal``.
 * @typedef {object} ToolContent
 * @property {"content"|"diff"|"terminal"} type
 * @property {ContentBlock} [content]
 * @property {string} [path]
 * @property {(string|null)} [old_text]
 * @property {string} [new_text]
 * @property {string} [terminal_id]
 * @property {Record<string, any>} [meta]
 */
/**
 * @typedef {object} Location
 * @property {string} path
 * @property {(number|null)} [line]
 * @property {Record<string, any>} [meta]
 */
/**
 * A tool call as started or updated; an update carries only what changed.
 * @typedef {object} ToolCall
 * @property {string} tool_call_id
 * @property {string} [title]
 * @property {string} [kind]
 * @property {string} [status]
 * @property {Array<ToolContent>} [content]
 * @property {Array<Location>} [locations]
 * @property {any} [raw_input]
 * @property {any} [raw_output]
 * @property {Record<string, any>} [meta]
 */
/**
 * @typedef {object} PlanEntry
 * @property {string} content
 * @property {string} priority
 * @property {string} status
 * @property {Record<string, any>} [meta]
 */
/**
 * The agent's plan, replacing the one shown before: a checklist (``entries``), or a Markdown plan / a plan file (``markdown`` / ``uri``, entries empty); ``removed``: no plan any more.
 * @typedef {object} Plan
 * @property {Array<PlanEntry>} entries
 * @property {string} [plan_id]
 * @property {string} [markdown]
 * @property {string} [uri]
 * @property {boolean} [removed]
 * @property {Record<string, any>} [meta]
 */
/**
 * @typedef {object} PermissionOption
 * @property {string} option_id
 * @property {string} name
 * @property {string} kind
 */
/**
 * @typedef {object} QuestionOption
 * @property {string} label
 * @property {string} description
 */
/**
 * @typedef {object} Question
 * @property {string} question
 * @property {string} header
 * @property {Array<QuestionOption>} options
 * @property {boolean} multi_select
 */
/**
 * @typedef {object} PermissionRequest
 * @property {string} request_id
 * @property {ToolCall} tool_call
 * @property {Array<PermissionOption>} options
 * @property {string} created_at
 * @property {Array<Question>} [questions]
 * @property {string} [plan]
 */
/**
 * @typedef {object} PermissionResolved
 * @property {string} request_id
 * @property {(string|null)} option_id
 * @property {Record<string, (string|Array<string>)>} [answers]
 * @property {boolean} [expired]
 */
/**
 * @typedef {object} TurnStarted
 * @property {string} prompt_id
 */
/**
 * @typedef {object} TurnEnded
 * @property {string} prompt_id
 * @property {string} stop_reason
 */
/** @typedef {"starting"|"idle"|"running"|"awaiting_permission"|"closed"|"failed"} SessionState */
/**
 * @typedef {object} StateChanged
 * @property {SessionState} state
 */
/**
 * @typedef {object} ErrorFields
 * @property {string} message
 */
/**
 * @typedef {object} SessionUpdated
 * @property {string} title
 * @property {boolean} archived
 */
/**
 * The session's mode changed: chosen by a client, set by the agent, or reapplied on restore.
 * @typedef {object} ModeChanged
 * @property {string} mode_id
 */
/**
 * @typedef {object} CommandInput
 * @property {string} hint
 */
/**
 * A slash command the agent offers (``/init``, a skill, …).
 * @typedef {object} Command
 * @property {string} name
 * @property {string} description
 * @property {(CommandInput|null)} [input]
 * @property {Record<string, any>} [meta]
 */
/**
 * The commands the agent offers this session now (the whole list, replacing the last one).
 * @typedef {object} CommandsChanged
 * @property {Array<Command>} commands
 */
/**
 * One session setting the agent offers (``select``: one of ``options``; ``boolean``).
 * @typedef {object} ConfigOption
 * @property {string} id
 * @property {string} name
 * @property {string} type
 * @property {(string|boolean)} current_value
 * @property {(string|null)} [description]
 * @property {any} [category]
 * @property {Array<Record<string, any>>} [options]
 */
/**
 * The agent's session settings now (the whole list).
 * @typedef {object} ConfigChanged
 * @property {Array<ConfigOption>} config_options
 */
/**
 * What the agent says about its session: its own title, its last activity (null: cleared).
 * @typedef {object} SessionInfo
 * @property {(string|null)} [title]
 * @property {(string|null)} [updated_at]
 * @property {Record<string, any>} [meta]
 */
/**
 * @typedef {object} Cost
 * @property {number} amount
 * @property {string} currency
 */
/**
 * Context window use: ``used`` of ``size`` tokens, and what the session cost so far.
 * @typedef {object} Usage
 * @property {number} used
 * @property {number} size
 * @property {(Cost|null)} [cost]
 * @property {Record<string, any>} [meta]
 */
/**
 * What no translation knows, passed as the agent sent it (``update``, or ``method``+``params``).
 * @typedef {object} AgentUpdate
 * @property {Record<string, any>} [update]
 * @property {string} [method]
 * @property {any} [params]
 */
/**
 * @typedef {object} ErrorDetail
 * @property {string} code stable, machine-readable: bad_request, session_not_found, ...
 * @property {string} message
 */
/**
 * Every error answer: ``{"error": {"code", "message"}}``.
 * @typedef {object} ErrorBody
 * @property {ErrorDetail} error
 */
/**
 * A session as listed.
 * @typedef {object} SessionSummary
 * @property {string} id
 * @property {string} title
 * @property {string} cwd
 * @property {SessionState} state
 * @property {string} created_at
 * @property {string} updated_at
 * @property {string} url
 * @property {number} last_seq
 * @property {string} agent the named agent running it
 * @property {(string|null)} mode its current mode id, if the agent has modes
 * @property {boolean} archived listed only with ?archived=true; a prompt unarchives it
 */
/**
 * One mode an agent offers.
 * @typedef {object} Mode
 * @property {string} id
 * @property {string} name
 * @property {string} [description]
 */
/**
 * The modes an agent offers a session and the one in force (None until the agent says).
 * @typedef {object} Modes
 * @property {Array<Mode>} available
 * @property {(string|null)} current_mode_id
 */
/**
 * A session with what a page showing it needs.
 * @typedef {object} SessionDetail
 * @property {string} id
 * @property {string} title
 * @property {string} cwd
 * @property {SessionState} state
 * @property {string} created_at
 * @property {string} updated_at
 * @property {string} url
 * @property {number} last_seq
 * @property {string} agent the named agent running it
 * @property {(string|null)} mode its current mode id, if the agent has modes
 * @property {boolean} archived listed only with ?archived=true; a prompt unarchives it
 * @property {Array<PermissionRequest>} pending_permissions
 * @property {(string|null)} prompt_id
 * @property {(string|null)} failure
 * @property {(Modes|null)} modes the modes the agent offers and the current one, kept across restarts
 */
/**
 * @typedef {object} SessionList
 * @property {Array<SessionSummary>} sessions
 */
/**
 * ``GET /api/sessions/{id}/events``: events after a seq, in seq order (``Event`` is derived from ``contract/events.py``; the OpenAPI document references it by name).
 * @typedef {object} EventsPage
 * @property {Array<Record<string, any>>} events
 * @property {number} last_seq
 * @property {number} first_seq
 */
/**
 * @typedef {object} Health
 * @property {"ok"|"degraded"|"stopping"} status
 * @property {string} [reason] only when degraded: why the database cannot be written
 * @property {string} version
 * @property {number} pid
 * @property {string} instance_id
 * @property {string} started_at
 */
/**
 * @typedef {object} Stopping
 * @property {"stopping"} status
 */
/**
 * @typedef {object} Rotated
 * @property {"rotated"} status
 * @property {number} closed_websockets
 */
/**
 * @typedef {object} Cancelling
 * @property {"cancelling"} status
 */
/**
 * @typedef {object} PromptAccepted
 * @property {string} prompt_id
 */
/**
 * @typedef {object} PermissionAnswered
 * @property {string} request_id
 * @property {string} option_id
 */
/**
 * @typedef {object} Pruned
 * @property {Array<string>} pruned the ids removed
 */
/**
 * @typedef {object} AgentInfo
 * @property {string} name
 * @property {boolean} default
 * @property {(Array<string>|null)} [command]
 * @property {Array<Mode>} modes advertised by the agent when a session starts; empty until then
 * @property {Array<string>} running workspaces with a running agent
 * @property {Array<string>} spares workspaces with a warm spare
 */
/**
 * @typedef {object} AgentList
 * @property {string} default_agent
 * @property {number} spare_agents 0: spares are off; do not ask for one
 * @property {Array<AgentInfo>} agents
 */
/**
 * @typedef {object} Warming
 * @property {string} agent
 * @property {string} cwd
 * @property {(number|null)} pid null: nothing is kept warm (spares off, or displaced)
 */
/**
 * @typedef {object} Device
 * @property {string} id
 * @property {string} name
 * @property {string} created_at
 * @property {string} last_seen_at updated at most once a minute
 * @property {boolean} current the device making this request
 */
/**
 * @typedef {object} DeviceList
 * @property {Array<Device>} devices
 */
/**
 * @typedef {object} Pairing
 * @property {string} url open it on the new device (once, before expires_at)
 * @property {string} code
 * @property {string} expires_at
 * @property {string} svg the QR code of url, an inline <svg> element
 */
/**
 * @typedef {object} PushKey
 * @property {string} public_key base64url (unpadded) uncompressed P-256 point
 */
/**
 * @typedef {object} PushSubscription
 * @property {string} id
 * @property {(string|null)} device_id null: made with the bearer token
 * @property {string} endpoint_origin scheme://host of the push service
 * @property {(number|null)} expiration_time
 * @property {string} created_at
 * @property {boolean} current made by the device (or token) asking
 */
/**
 * @typedef {object} PushSubscriptionList
 * @property {Array<PushSubscription>} subscriptions
 */
/**
 * @typedef {object} Subscribed
 * @property {string} id
 */
/**
 * @typedef {object} PushSent
 * @property {number} sent queued to this many subscriptions
 */
/**
 * @typedef {object} PushAction
 * @property {string} action the option_id to answer with
 * @property {"Allow once"|"Deny"} title
 */
/**
 * The decrypted Web Push message (webhooks add absolute_url).
 * @typedef {object} PushPayload
 * @property {string} title
 * @property {string} body
 * @property {string} url /s/<session id> (/ for a test)
 * @property {string} tag
 * @property {"permission"|"turn_ended"|"session_failed"|"test"} kind
 * @property {string} session_id
 * @property {(string|null)} request_id
 * @property {Array<PushAction>} actions
 * @property {string} [absolute_url]
 */
/**
 * ``POST /api/sessions``: a session in ``cwd`` (absolute, existing), with the named agent (the default one when absent) in ``mode`` (one the agent offers).
 * @typedef {object} CreateSession
 * @property {string} cwd
 * @property {(string|null)} [title]
 * @property {(string|null)} [agent]
 * @property {(string|null)} [mode]
 */
/**
 * ``PATCH /api/sessions/{id}``: rename and/or (un)archive.
 * @typedef {object} EditSession
 * @property {string} [title] at most 200 characters once runs of whitespace become one space; no control characters (400 names the first); blank: the workspace folder's name
 * @property {boolean} [archived]
 */
/**
 * ``POST /api/sessions/{id}/prompt``: start a turn.
 * @typedef {object} Prompt
 * @property {string} text what to tell the agent
 */
/**
 * ``POST /api/sessions/{id}/mode``: switch to a mode the session's agent offers.
 * @typedef {object} SetMode
 * @property {string} mode_id one of the session's modes.available ids
 */
/**
 * ``POST /api/sessions/{id}/permissions/{request_id}``: one of the request's options, and answers to its questions if it has any (checked against them by the session).
 * @typedef {object} PermissionAnswer
 * @property {string} option_id
 * @property {(Record<string, (string|Array<string>)>|null)} [answers]
 */
/**
 * ``POST /api/agents/{agent}/warm``: start a spare agent for this workspace.
 * @typedef {object} Warm
 * @property {string} cwd
 */
/**
 * ``POST /api/sessions/prune`` (body optional): delete closed sessions older than this.
 * @typedef {object} Prune
 * @property {(number|null)} [older_than_days]
 */
/**
 * ``PATCH /api/devices/{id}``.
 * @typedef {object} RenameDevice
 * @property {string} name 1 to 100 characters once surrounding whitespace is dropped; no control characters
 */
/**
 * @typedef {object} PushKeys
 * @property {string} p256dh base64url P-256 point (65 bytes)
 * @property {string} auth base64url, 16 bytes
 */
/**
 * ``POST /api/push/subscriptions``: the browser's ``PushSubscription.toJSON()``.
 * @typedef {object} PushSubscribe
 * @property {string} endpoint
 * @property {(number|null)} [expirationTime]
 * @property {PushKeys} keys
 */
/**
 * ``POST /api/push/test`` (body optional): a test notification to one subscription.
 * @typedef {object} PushTest
 * @property {(string|null)} [subscription_id]
 */
/** @typedef {{seq: number, type: "user_message", ts: string} & UserMessage} UserMessageEvent */
/** @typedef {{seq: number, type: "agent_message_chunk", ts: string} & MessageChunk} AgentMessageChunkEvent */
/** @typedef {{seq: number, type: "agent_thought_chunk", ts: string} & MessageChunk} AgentThoughtChunkEvent */
/** @typedef {{seq: number, type: "user_message_chunk", ts: string} & MessageChunk} UserMessageChunkEvent */
/** @typedef {{seq: number, type: "tool_call", ts: string} & ToolCall} ToolCallEvent */
/** @typedef {{seq: number, type: "tool_call_update", ts: string} & ToolCall} ToolCallUpdateEvent */
/** @typedef {{seq: number, type: "plan", ts: string} & Plan} PlanEvent */
/** @typedef {{seq: number, type: "permission_request", ts: string} & PermissionRequest} PermissionRequestEvent */
/** @typedef {{seq: number, type: "permission_resolved", ts: string} & PermissionResolved} PermissionResolvedEvent */
/** @typedef {{seq: number, type: "turn_started", ts: string} & TurnStarted} TurnStartedEvent */
/** @typedef {{seq: number, type: "turn_ended", ts: string} & TurnEnded} TurnEndedEvent */
/** @typedef {{seq: number, type: "state", ts: string} & StateChanged} StateEvent */
/** @typedef {{seq: number, type: "error", ts: string} & ErrorFields} ErrorEvent */
/** @typedef {{seq: number, type: "session_updated", ts: string} & SessionUpdated} SessionUpdatedEvent */
/** @typedef {{seq: number, type: "mode_changed", ts: string} & ModeChanged} ModeChangedEvent */
/** @typedef {{seq: number, type: "commands_changed", ts: string} & CommandsChanged} CommandsChangedEvent */
/** @typedef {{seq: number, type: "config_changed", ts: string} & ConfigChanged} ConfigChangedEvent */
/** @typedef {{seq: number, type: "session_info", ts: string} & SessionInfo} SessionInfoEvent */
/** @typedef {{seq: number, type: "usage", ts: string} & Usage} UsageEvent */
/** @typedef {{seq: number, type: "agent_update", ts: string} & AgentUpdate} AgentUpdateEvent */
/** Any event, as the events page and the WebSocket deliver it. */
/** @typedef {UserMessageEvent|AgentMessageChunkEvent|AgentThoughtChunkEvent|UserMessageChunkEvent|ToolCallEvent|ToolCallUpdateEvent|PlanEvent|PermissionRequestEvent|PermissionResolvedEvent|TurnStartedEvent|TurnEndedEvent|StateEvent|ErrorEvent|SessionUpdatedEvent|ModeChangedEvent|CommandsChangedEvent|ConfigChangedEvent|SessionInfoEvent|UsageEvent|AgentUpdateEvent} Event */
