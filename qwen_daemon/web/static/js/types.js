// @ts-check
// JSDoc types of the daemon's protocol, for the type checker only (`make lint`): nothing imports
// this module at run time, the other modules name its types as `import("./types.js").Event`.
//
// Why loose: these are the few shapes the pages read, written down until the generated protocol.js
// (derived from qwen_daemon/contract/) provides them under the same names. Nested agent data
// (tool content, modes) stays a plain record here, whatever its naming.

/** @typedef {Record<string, any>} Data data passed on from the agent, shape not relied on */

/**
 * @typedef {object} ToolCall a tool call as started or updated (an update carries only what changed)
 * @property {string} tool_call_id
 * @property {string} [title]
 * @property {string} [kind]
 * @property {string} [status]
 * @property {Data[]} [content] what the call shows: text blocks, diffs, terminals
 * @property {{path: string, line?: number | null}[]} [locations]
 * @property {unknown} [raw_input] the tool's own arguments, as sent
 * @property {unknown} [raw_output]
 */

/**
 * @typedef {object} PermissionRequest a question the agent waits on (an event, and in a session's detail)
 * @property {string} request_id
 * @property {ToolCall} tool_call
 * @property {{option_id: string, name: string, kind: string}[]} options
 * @property {string} [created_at]
 * @property {{question: string, header: string, options: {label: string, description: string}[], multi_select: boolean}[]} [questions]
 * @property {string} [plan]
 */

/**
 * @typedef {{seq: number, ts?: string}} Numbered what every event carries besides its type
 * @typedef {Numbered & {type: "user_message", text: string, prompt_id?: string}} UserMessageEvent
 * @typedef {Numbered & {type: "agent_message_chunk" | "agent_thought_chunk", text: string, content?: Data}} ChunkEvent
 * @typedef {Numbered & {type: "tool_call" | "tool_call_update"} & ToolCall} ToolCallEvent
 * @typedef {Numbered & {type: "plan", entries: {content: string, priority?: string, status?: string}[]}} PlanEvent
 * @typedef {Numbered & {type: "permission_request"} & PermissionRequest} PermissionRequestEvent
 * @typedef {Numbered & {type: "permission_resolved", request_id: string, option_id: string | null, answers?: Record<string, string | string[]>, expired?: boolean}} PermissionResolvedEvent
 * @typedef {Numbered & {type: "turn_started", prompt_id: string}} TurnStartedEvent
 * @typedef {Numbered & {type: "turn_ended", prompt_id: string, stop_reason: string}} TurnEndedEvent
 * @typedef {Numbered & {type: "state", state: string}} StateEvent
 * @typedef {Numbered & {type: "error", message: string}} ErrorEvent
 * @typedef {Numbered & {type: "session_updated", title: string, archived: boolean}} SessionUpdatedEvent
 * @typedef {Numbered & {type: "mode_changed", mode_id: string}} ModeChangedEvent
 * @typedef {Numbered & {type: "agent_update", update?: Data, method?: string, params?: unknown}} AgentUpdateEvent
 */

/**
 * @typedef {UserMessageEvent | ChunkEvent | ToolCallEvent | PlanEvent | PermissionRequestEvent
 *   | PermissionResolvedEvent | TurnStartedEvent | TurnEndedEvent | StateEvent | ErrorEvent
 *   | SessionUpdatedEvent | ModeChangedEvent | AgentUpdateEvent} Event one event of a session's log
 */

/**
 * @typedef {object} SessionSummary a session as listed (GET /api/sessions)
 * @property {string} id
 * @property {string} title
 * @property {string} cwd
 * @property {string} state
 * @property {string} created_at
 * @property {string} updated_at
 * @property {string} url
 * @property {number} last_seq
 * @property {string} [agent]
 * @property {string | null} [mode]
 * @property {boolean} [archived]
 */

/**
 * @typedef {SessionSummary & {
 *   pending_permissions?: PermissionRequest[],
 *   prompt_id?: string | null,
 *   failure?: string | null,
 *   modes?: Data | null,
 * }} SessionDetail a session with what its page needs (GET /api/sessions/{id})
 */

export {};
