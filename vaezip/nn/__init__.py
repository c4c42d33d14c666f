"""Neural-network building blocks: layers (GDN, gain units) and the four transforms g_a, g_s, h_a, h_s."""
