"""Refuse what OpenAI's chat.completions refuses, with OpenAI's wording where it matters.

The point is to catch a translator that sends something a real server would reject:
Anthropic-only fields, tool messages out of place, unanswered tool calls, tool names that
are too long or contain other characters, more than four stop sequences.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.emulator_openai.errors import invalid

KNOWN_PARAMETERS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "safety_identifier",
        "reasoning_effort",
        "response_format",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "metadata",
        "store",
        "service_tier",
        "prompt_cache_key",
        "verbosity",
        # OpenRouter's extension for providers with explicit prompt caching.
        "cache_control",
    }
)
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
PART_TYPES = frozenset({"text", "image_url", "input_audio", "file"})
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_STOP = 4


def validate_request(body: dict[str, Any]) -> None:
    for name in body:
        if name not in KNOWN_PARAMETERS:
            raise invalid(f"Unrecognized request argument supplied: {name}", param=name)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise invalid("you must provide a model parameter", param="model")
    if "stream_options" in body and body.get("stream") is not True:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    _validate_stop(body.get("stop"))
    _validate_tools(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must contain at least one message.", param="messages")
    _validate_messages(messages)


def _validate_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(item, str) for item in stop):
        raise invalid("Invalid type for 'stop'.", param="stop")
    if len(stop) > MAX_STOP:
        raise invalid(
            f"Invalid 'stop': array too long. Expected an array with maximum length {MAX_STOP}, "
            f"but got an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )


def _validate_tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is None:
        for name in ("tool_choice", "parallel_tool_calls"):
            if name in body:
                raise invalid(f"'{name}' is only allowed when 'tools' are specified.", param=name)
        return
    if not isinstance(tools, list):
        raise invalid("Invalid type for 'tools'.", param="tools")
    names = set()
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(tool, dict)
            or tool.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise invalid(f"Invalid 'tools[{index}]': expected a function tool.")
        _check_tool_name(function.get("name"), f"tools[{index}].function.name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise invalid(f"Invalid 'tools[{index}].function.parameters': expected an object.")
        names.add(function["name"])
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        chosen = choice.get("function")
        chosen_name = chosen.get("name") if isinstance(chosen, dict) else None
        if chosen_name not in names:
            raise invalid(
                f"Invalid value for 'tool_choice': function {chosen_name!r} is not one of the tools.",
                param="tool_choice",
            )
    elif choice is not None and choice not in ("auto", "required", "none"):
        raise invalid(f"Invalid value for 'tool_choice': {choice!r}.", param="tool_choice")


def _check_tool_name(name: Any, param: str) -> None:
    if not isinstance(name, str) or not name:
        raise invalid(f"Missing required parameter: '{param}'.", param=param)
    if len(name) > 64:
        raise invalid(
            f"Invalid '{param}': string too long. Expected a string with maximum length 64, "
            f"but got a string with length {len(name)} instead.",
            param=param,
            code="string_above_max_length",
        )
    if not TOOL_NAME.match(name):
        raise invalid(
            f"Invalid '{param}': string does not match pattern. Expected a string that matches "
            f"the pattern '^[a-zA-Z0-9_-]+$'.",
            param=param,
            code="invalid_value",
        )


def _validate_messages(messages: list[Any]) -> None:
    unanswered: list[str] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise invalid(f"Invalid value for '{where}.role'.", param=f"{where}.role")
        role = message["role"]
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in unanswered:
                raise invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"{where}.role",
                )
            unanswered.remove(call_id)
            _validate_content(message.get("content"), where, text_only=True)
            continue
        if unanswered:
            raise invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(unanswered)}",
                param=f"{where}.role",
            )
        if role == "assistant":
            unanswered = _validate_tool_calls(message.get("tool_calls"), where)
            if message.get("content") is not None:
                _validate_content(message["content"], where, text_only=True)
            elif not unanswered:
                raise invalid(
                    f"Invalid value for '{where}.content': expected a string, got null.",
                    param=f"{where}.content",
                )
        else:
            _validate_content(message.get("content"), where, text_only=role != "user")
    if unanswered:
        raise invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages responding "
            f"to each 'tool_call_id'. The following tool_call_ids did not have response "
            f"messages: {', '.join(unanswered)}",
            param="messages",
        )


def _validate_tool_calls(tool_calls: Any, where: str) -> list[str]:
    if tool_calls is None:
        return []
    if not isinstance(tool_calls, list) or not tool_calls:
        raise invalid(f"Invalid '{where}.tool_calls': expected a non-empty array.")
    ids = []
    for index, call in enumerate(tool_calls):
        call_where = f"{where}.tool_calls[{index}]"
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or call.get("type") != "function"
            or not isinstance(function, dict)
        ):
            raise invalid(f"Invalid '{call_where}': expected a function call.")
        if not isinstance(call.get("id"), str) or not call["id"]:
            raise invalid(f"Missing required parameter: '{call_where}.id'.")
        _check_tool_name(function.get("name"), f"{call_where}.function.name")
        if not isinstance(function.get("arguments"), str):
            raise invalid(f"Invalid '{call_where}.function.arguments': expected a string.")
        ids.append(call["id"])
    return ids


def _validate_content(content: Any, where: str, *, text_only: bool) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(f"Invalid type for '{where}.content'.", param=f"{where}.content")
    for index, part in enumerate(content):
        part_where = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES or (text_only and kind != "text"):
            raise invalid(f"Invalid value for '{part_where}.type': {kind!r}.", param=part_where)
        if kind == "text" and not isinstance(part.get("text"), str):
            raise invalid(f"Missing required parameter: '{part_where}.text'.", param=part_where)
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise invalid(f"Missing required parameter: '{part_where}.image_url.url'.")
