from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

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
