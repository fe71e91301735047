from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SenderKeyDistribution(_message.Message):
    __slots__ = ("group_id", "distribution")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    distribution: bytes
    def __init__(self, group_id: _Optional[str] = ..., distribution: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("url", "mimetype", "caption", "file_sha256", "file_length", "media_key", "file_enc_sha256", "direct_path")
    URL_FIELD_NUMBER: _ClassVar[int]
    MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    FILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FILE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEDIA_KEY_FIELD_NUMBER: _ClassVar[int]
    FILE_ENC_SHA256_FIELD_NUMBER: _ClassVar[int]
    DIRECT_PATH_FIELD_NUMBER: _ClassVar[int]
    url: str
    mimetype: str
    caption: str
    file_sha256: bytes
    file_length: int
    media_key: bytes
    file_enc_sha256: bytes
    direct_path: str
    def __init__(self, url: _Optional[str] = ..., mimetype: _Optional[str] = ..., caption: _Optional[str] = ..., file_sha256: _Optional[bytes] = ..., file_length: _Optional[int] = ..., media_key: _Optional[bytes] = ..., file_enc_sha256: _Optional[bytes] = ..., direct_path: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("url", "mimetype", "title", "file_sha256", "file_length", "media_key", "file_name", "file_enc_sha256", "direct_path")
    URL_FIELD_NUMBER: _ClassVar[int]
    MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    FILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FILE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MEDIA_KEY_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_ENC_SHA256_FIELD_NUMBER: _ClassVar[int]
    DIRECT_PATH_FIELD_NUMBER: _ClassVar[int]
    url: str
    mimetype: str
    title: str
    file_sha256: bytes
    file_length: int
    media_key: bytes
    file_name: str
    file_enc_sha256: bytes
    direct_path: str
    def __init__(self, url: _Optional[str] = ..., mimetype: _Optional[str] = ..., title: _Optional[str] = ..., file_sha256: _Optional[bytes] = ..., file_length: _Optional[int] = ..., media_key: _Optional[bytes] = ..., file_name: _Optional[str] = ..., file_enc_sha256: _Optional[bytes] = ..., direct_path: _Optional[str] = ...) -> None: ...

class DeviceSent(_message.Message):
    __slots__ = ("destination_jid", "message", "phash")
    DESTINATION_JID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PHASH_FIELD_NUMBER: _ClassVar[int]
    destination_jid: str
    message: Message
    phash: str
    def __init__(self, destination_jid: _Optional[str] = ..., message: _Optional[_Union[Message, _Mapping]] = ..., phash: _Optional[str] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("conversation", "sender_key_distribution", "image", "document", "device_sent")
    CONVERSATION_FIELD_NUMBER: _ClassVar[int]
    SENDER_KEY_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SENT_FIELD_NUMBER: _ClassVar[int]
    conversation: str
    sender_key_distribution: SenderKeyDistribution
    image: Image
    document: Document
    device_sent: DeviceSent
    def __init__(self, conversation: _Optional[str] = ..., sender_key_distribution: _Optional[_Union[SenderKeyDistribution, _Mapping]] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., document: _Optional[_Union[Document, _Mapping]] = ..., device_sent: _Optional[_Union[DeviceSent, _Mapping]] = ...) -> None: ...
