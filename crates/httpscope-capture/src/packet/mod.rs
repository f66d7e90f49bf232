//! Packet capture: files and AF_PACKET, TCP reassembly (in progress).
