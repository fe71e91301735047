from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChatFrame(_message.Message):
    __slots__ = ("ping", "pong", "stream_error", "message", "ack")
    class Ping(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: int
        def __init__(self, id: _Optional[int] = ...) -> None: ...
    class Pong(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: int
        def __init__(self, id: _Optional[int] = ...) -> None: ...
    class StreamError(_message.Message):
        __slots__ = ("code", "text")
        class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            UNKNOWN: _ClassVar[ChatFrame.StreamError.Code]
            CONFLICT: _ClassVar[ChatFrame.StreamError.Code]
            LOGGED_OUT: _ClassVar[ChatFrame.StreamError.Code]
            CLIENT_OUTDATED: _ClassVar[ChatFrame.StreamError.Code]
            RESTART_REQUIRED: _ClassVar[ChatFrame.StreamError.Code]
            RATE_LIMITED: _ClassVar[ChatFrame.StreamError.Code]
        UNKNOWN: ChatFrame.StreamError.Code
        CONFLICT: ChatFrame.StreamError.Code
        LOGGED_OUT: ChatFrame.StreamError.Code
        CLIENT_OUTDATED: ChatFrame.StreamError.Code
        RESTART_REQUIRED: ChatFrame.StreamError.Code
        RATE_LIMITED: ChatFrame.StreamError.Code
        CODE_FIELD_NUMBER: _ClassVar[int]
        TEXT_FIELD_NUMBER: _ClassVar[int]
        code: ChatFrame.StreamError.Code
        text: str
        def __init__(self, code: _Optional[_Union[ChatFrame.StreamError.Code, str]] = ..., text: _Optional[str] = ...) -> None: ...
    class Message(_message.Message):
        __slots__ = ("id", "payload")
        ID_FIELD_NUMBER: _ClassVar[int]
        PAYLOAD_FIELD_NUMBER: _ClassVar[int]
        id: str
        payload: bytes
        def __init__(self, id: _Optional[str] = ..., payload: _Optional[bytes] = ...) -> None: ...
    class Ack(_message.Message):
        __slots__ = ("id",)
        ID_FIELD_NUMBER: _ClassVar[int]
        id: str
        def __init__(self, id: _Optional[str] = ...) -> None: ...
    PING_FIELD_NUMBER: _ClassVar[int]
    PONG_FIELD_NUMBER: _ClassVar[int]
    STREAM_ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ping: ChatFrame.Ping
    pong: ChatFrame.Pong
    stream_error: ChatFrame.StreamError
    message: ChatFrame.Message
    ack: ChatFrame.Ack
    def __init__(self, ping: _Optional[_Union[ChatFrame.Ping, _Mapping]] = ..., pong: _Optional[_Union[ChatFrame.Pong, _Mapping]] = ..., stream_error: _Optional[_Union[ChatFrame.StreamError, _Mapping]] = ..., message: _Optional[_Union[ChatFrame.Message, _Mapping]] = ..., ack: _Optional[_Union[ChatFrame.Ack, _Mapping]] = ...) -> None: ...

class Envelope(_message.Message):
    __slots__ = ("recipient", "sender", "type", "body")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    recipient: bytes
    sender: bytes
    type: int
    body: bytes
    def __init__(self, recipient: _Optional[bytes] = ..., sender: _Optional[bytes] = ..., type: _Optional[int] = ..., body: _Optional[bytes] = ...) -> None: ...
