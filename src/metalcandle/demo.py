def main(): print("demo")
