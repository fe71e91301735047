from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EncryptionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    E2EE: _ClassVar[EncryptionType]
    HOSTED: _ClassVar[EncryptionType]
E2EE: EncryptionType
HOSTED: EncryptionType

class DeviceIdentity(_message.Message):
    __slots__ = ("raw_id", "timestamp", "key_index", "account_type", "device_type")
    RAW_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KEY_INDEX_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    raw_id: int
    timestamp: int
    key_index: int
    account_type: EncryptionType
    device_type: EncryptionType
    def __init__(self, raw_id: _Optional[int] = ..., timestamp: _Optional[int] = ..., key_index: _Optional[int] = ..., account_type: _Optional[_Union[EncryptionType, str]] = ..., device_type: _Optional[_Union[EncryptionType, str]] = ...) -> None: ...

class SignedDeviceIdentity(_message.Message):
    __slots__ = ("details", "account_signature_key", "account_signature", "device_signature")
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SIGNATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    details: bytes
    account_signature_key: bytes
    account_signature: bytes
    device_signature: bytes
    def __init__(self, details: _Optional[bytes] = ..., account_signature_key: _Optional[bytes] = ..., account_signature: _Optional[bytes] = ..., device_signature: _Optional[bytes] = ...) -> None: ...

class SignedDeviceIdentityHMAC(_message.Message):
    __slots__ = ("details", "hmac", "account_type")
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    HMAC_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    details: bytes
    hmac: bytes
    account_type: EncryptionType
    def __init__(self, details: _Optional[bytes] = ..., hmac: _Optional[bytes] = ..., account_type: _Optional[_Union[EncryptionType, str]] = ...) -> None: ...

class KeyIndexList(_message.Message):
    __slots__ = ("raw_id", "timestamp", "current_index", "valid_indexes", "account_type")
    RAW_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CURRENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    VALID_INDEXES_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_TYPE_FIELD_NUMBER: _ClassVar[int]
    raw_id: int
    timestamp: int
    current_index: int
    valid_indexes: _containers.RepeatedScalarFieldContainer[int]
    account_type: EncryptionType
    def __init__(self, raw_id: _Optional[int] = ..., timestamp: _Optional[int] = ..., current_index: _Optional[int] = ..., valid_indexes: _Optional[_Iterable[int]] = ..., account_type: _Optional[_Union[EncryptionType, str]] = ...) -> None: ...

class SignedKeyIndexList(_message.Message):
    __slots__ = ("details", "account_signature", "account_signature_key")
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_SIGNATURE_KEY_FIELD_NUMBER: _ClassVar[int]
    details: bytes
    account_signature: bytes
    account_signature_key: bytes
    def __init__(self, details: _Optional[bytes] = ..., account_signature: _Optional[bytes] = ..., account_signature_key: _Optional[bytes] = ...) -> None: ...
